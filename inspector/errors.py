"""One error family for the whole system: every failure a user can see has a stable code."""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Stable, machine-readable reasons. Users grep and alert on these; never rename one."""

    PAYLOAD_TOO_LARGE = "payload.too_large"
    PAYLOAD_NOT_JSON = "payload.not_json"
    PAYLOAD_INVALID = "payload.invalid"
    PAYLOAD_UNSUPPORTED_SCHEMA = "payload.unsupported_schema"
    PAYLOAD_BAD_BASE64 = "payload.bad_base64"
    PAYLOAD_CHECKSUM_MISMATCH = "payload.checksum_mismatch"
    PAYLOAD_TOPIC_MISMATCH = "payload.topic_mismatch"
    TOPIC_INVALID = "topic.invalid"
    IMAGE_EMPTY = "image.empty"
    IMAGE_TOO_LARGE = "image.too_large"
    IMAGE_UNSUPPORTED_TYPE = "image.unsupported_type"
    IMAGE_TYPE_MISMATCH = "image.type_mismatch"
    IMAGE_UNDECODABLE = "image.undecodable"
    IMAGE_TOO_SMALL = "image.too_small"
    IMAGE_TOO_MANY_PIXELS = "image.too_many_pixels"
    AUDIO_EMPTY = "audio.empty"
    AUDIO_TOO_LARGE = "audio.too_large"
    AUDIO_UNSUPPORTED_TYPE = "audio.unsupported_type"
    AUDIO_TYPE_MISMATCH = "audio.type_mismatch"
    AUDIO_CORRUPT = "audio.corrupt"
    AUDIO_TOO_LONG = "audio.too_long"
    DUPLICATE_CONFLICT = "request.duplicate_conflict"
    ENGINE_FAILED = "engine.failed"
    TRAIN_TOO_FEW_REVIEWS = "train.too_few_reviews"
    TRAIN_CLASS_MISSING = "train.class_missing"
    ADAPTER_NOT_FOUND = "adapter.not_found"
    ADAPTER_INVALID_TRANSITION = "adapter.invalid_transition"
    ADAPTER_PROMOTION_REFUSED = "adapter.promotion_refused"
    ADAPTER_CHECKSUM_MISMATCH = "adapter.checksum_mismatch"
    ADAPTER_LOAD_FAILED = "adapter.load_failed"


class InspectorError(Exception):
    """Base of every error Inspector raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(InspectorError):
    """A configuration file or environment variable holds an invalid value."""


class RejectedInput(InspectorError):
    """Input refused with a stable code and a human message that says what to do."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"[{code.value}] {message}")
        self.code = code
        self.reason = message


class DuplicateConflict(RejectedInput):
    """A request_id already stored arrived again with different content."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            Code.DUPLICATE_CONFLICT,
            f"request_id {request_id} was already received with different content; "
            "a retry must resend the same capture, a new capture needs a new request_id",
        )
        self.request_id = request_id


class StoreUnavailable(InspectorError):
    """The database cannot be reached; the caller should back off and retry."""


class NotFound(InspectorError):
    """A looked-up record does not exist."""


class ModelLoadError(InspectorError):
    """A model directory is missing, incomplete or unreadable."""


class DatasetRefused(RejectedInput):
    """Too few reviews, or a class missing, to train or evaluate a site adapter."""


class RegistryRefused(RejectedInput):
    """An adapter registry change that the rules do not allow (or an unknown adapter)."""


class AlreadyExists(InspectorError):
    """A record with this name already exists (a user, a token name)."""


class InvalidInput(InspectorError):
    """A form field, query parameter or CLI argument does not hold an acceptable value."""
