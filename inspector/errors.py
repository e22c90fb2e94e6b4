"""One error family for the whole system: every failure a user can see has a stable code."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID


class Code(StrEnum):
    """Stable, machine-readable reasons. Users grep and alert on these; never rename one."""

    PAYLOAD_TOO_LARGE = "payload.too_large"
    PAYLOAD_NOT_JSON = "payload.not_json"
    PAYLOAD_INVALID = "payload.invalid"
    PAYLOAD_UNSUPPORTED_SCHEMA = "payload.unsupported_schema"
    PAYLOAD_BAD_BASE64 = "payload.bad_base64"
    PAYLOAD_CHECKSUM_MISMATCH = "payload.checksum_mismatch"
    PAYLOAD_TOPIC_MISMATCH = "payload.topic_mismatch"
    PAYLOAD_TOO_DEEP = "payload.too_deep"
    PAYLOAD_UNSAFE_TEXT = "payload.unsafe_text"
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
    # A request whose commit kept failing for a reason other than an unreachable database.
    COMMIT_FAILED = "request.commit_failed"
    # Why a verdict's rationale was not produced (a rationale message's reason, not a rejection).
    RATIONALE_WORKER_LOST = "rationale.worker_lost"
    RATIONALE_ENGINE_FAILED = "rationale.engine_failed"
    CONFIG_INVALID = "config.invalid"
    STORE_UNAVAILABLE = "store.unavailable"
    STORE_FAILED = "store.failed"
    STORE_CONFLICT = "store.conflict"
    NOT_FOUND = "record.not_found"
    REVIEW_INVALID = "review.invalid"
    REVIEW_CONFLICT = "review.conflict"
    GOLDEN_NOT_REVIEWED = "golden.not_reviewed"
    MODEL_LOAD_FAILED = "model.load_failed"
    # model.path holds microsoft/Phi-4-multimodal-instruct as downloaded (the remote-code layout).
    MODEL_NEEDS_IMPORT = "model.needs_import"
    MODEL_IMPORT_REFUSED = "model.import_refused"
    MODEL_TARGET_NOT_EMPTY = "model.target_not_empty"
    BROKER_PUBLISH_FAILED = "broker.publish_failed"
    BROKER_PUBLISH_TIMEOUT = "broker.publish_timeout"
    BROKER_PUBLISH_REFUSED = "broker.publish_refused"
    SUBMIT_TIMEOUT = "submit.timeout"
    CAMERA_FAILED = "device.camera"
    MICROPHONE_FAILED = "device.audio"
    SPOOL_FULL = "spool.full"
    SPOOL_BUSY = "spool.busy"
    TRIGGER_FAILED = "trigger.failed"
    DEMO_FAILED = "demo.failed"
    BENCH_FAILED = "bench.failed"
    INPUT_INVALID = "input.invalid"
    ALREADY_EXISTS = "record.already_exists"
    TRAIN_TOO_FEW_REVIEWS = "train.too_few_reviews"
    TRAIN_CLASS_MISSING = "train.class_missing"
    ADAPTER_NOT_FOUND = "adapter.not_found"
    ADAPTER_INVALID_TRANSITION = "adapter.invalid_transition"
    ADAPTER_PROMOTION_REFUSED = "adapter.promotion_refused"
    ADAPTER_CHECKSUM_MISMATCH = "adapter.checksum_mismatch"
    ADAPTER_LOAD_FAILED = "adapter.load_failed"
    # The worker itself failed on a message (a bug, not bad input); the reason names the
    # exception type, never its text.
    INTERNAL_ERROR = "internal.error"
    # A message the worker did not answer within worker.settle_timeout_s, rejected by its watchdog.
    INTERNAL_TIMEOUT = "internal.timeout"


class InspectorError(Exception):
    """Base of every error Inspector raises on purpose; raise a subclass, each has a code."""

    code: Code

    def __init__(self, message: str) -> None:
        if type(self) is InspectorError:
            raise TypeError("raise a subclass of InspectorError: each one carries a stable Code")
        super().__init__(message)
        self.message = message


class ConfigError(InspectorError):
    """A configuration file or environment variable holds an invalid value."""

    code = Code.CONFIG_INVALID


class RejectedInput(InspectorError):
    """Input refused with a stable code and a human message that says what to do."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"[{code.value}] {message}")
        self.code = code
        self.reason = message


class RequestRefused(RejectedInput):
    """A request payload refused at intake, with its request_id when one could be read."""

    def __init__(self, code: Code, message: str, request_id: UUID | None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


class InternalFailure(RejectedInput):
    """The worker failed on a message; the reason keeps the exception type, never its text."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(
            Code.INTERNAL_ERROR,
            f"the worker failed while {stage} this request ({type(exc).__name__}); the fault is "
            "in the worker, not necessarily in the request: tell the operators",
        )
        self.exception_type = type(exc).__name__


class SettleTimeout(RejectedInput):
    """A message the worker did not answer in time, rejected by its watchdog."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            Code.INTERNAL_TIMEOUT,
            f"the worker did not answer this request within {timeout_s:g} s (its model or media "
            "decoding is stuck); send it again, and tell the operators",
        )


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

    code = Code.STORE_UNAVAILABLE


class StoreFailed(InspectorError):
    """The database refused a statement for a reason other than being unreachable."""

    code = Code.STORE_FAILED


class StoreConflict(StoreFailed):
    """A write collided with a concurrent one (a unique key); retrying reconciles it."""

    code = Code.STORE_CONFLICT


class NotFound(InspectorError):
    """A looked-up record does not exist."""

    code = Code.NOT_FOUND


class InvalidReview(InspectorError):
    """A review with a missing reviewer, an unknown decision or an unknown final verdict."""

    code = Code.REVIEW_INVALID


class ReviewConflict(InspectorError):
    """A review_id already stored arrived again with different content."""

    code = Code.REVIEW_CONFLICT


class NotReviewed(InspectorError):
    """Only an inspection with a review that counts can be marked golden."""

    code = Code.GOLDEN_NOT_REVIEWED


class ModelLoadError(InspectorError):
    """A model directory is missing, incomplete or unreadable."""

    code = Code.MODEL_LOAD_FAILED


class ModelNeedsImport(ModelLoadError):
    """A model directory holds the download's remote-code layout: `inspector model import` it."""

    code = Code.MODEL_NEEDS_IMPORT


class ModelImportRefused(InspectorError):
    """`inspector model import` refuses a source: a shard missing or cut short, a tensor unknown."""

    code = Code.MODEL_IMPORT_REFUSED


class ModelTargetNotEmpty(InspectorError):
    """A command that writes a model directory was pointed at one that is not empty."""

    code = Code.MODEL_TARGET_NOT_EMPTY


class EngineFailed(InspectorError):
    """Inference could not run (e.g. out of GPU memory even for a single request)."""

    code = Code.ENGINE_FAILED


class PublishFailed(InspectorError):
    """The MQTT client could not queue a publish (e.g. its queue is full)."""

    code = Code.BROKER_PUBLISH_FAILED


class PublishTimeout(InspectorError):
    """The broker did not acknowledge a QoS 1 publish in time."""

    code = Code.BROKER_PUBLISH_TIMEOUT


class PublishRefused(InspectorError):
    """The broker acknowledged a publish with a failure reason code (e.g. not authorized)."""

    code = Code.BROKER_PUBLISH_REFUSED

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"broker refused the publish to {topic}: {reason}")
        self.topic = topic
        self.reason = reason


class SubmitTimeout(InspectorError):
    """No verdict or rejection arrived in time."""

    code = Code.SUBMIT_TIMEOUT


class CameraError(InspectorError):
    """The camera, stream or video file cannot be opened or read."""

    code = Code.CAMERA_FAILED


class AudioError(InspectorError):
    """The microphone cannot be opened, or a voice note file is unusable."""

    code = Code.MICROPHONE_FAILED


class SpoolFull(InspectorError):
    """The spool's disk budget would be exceeded; the capture was not taken."""

    code = Code.SPOOL_FULL


class SpoolBusy(InspectorError):
    """Another edge agent already owns this spool."""

    code = Code.SPOOL_BUSY


class TriggerFailed(InspectorError):
    """A capture trigger cannot start (e.g. its port is taken) or is not configured."""

    code = Code.TRIGGER_FAILED


class DemoFailed(InspectorError):
    """A step of the demo line did not work; the message says which and what to do."""

    code = Code.DEMO_FAILED


class BenchFailed(InspectorError):
    """A benchmark could not run its workload (no broker, a worker that never came up)."""

    code = Code.BENCH_FAILED


class DatasetRefused(RejectedInput):
    """Too few reviews, or a class missing, to train or evaluate a site adapter."""


class RegistryRefused(RejectedInput):
    """An adapter registry change that the rules do not allow (or an unknown adapter)."""


class AdapterRefused(RejectedInput):
    """A site adapter that cannot be served: its file differs from the registry, or won't load."""


class AlreadyExists(InspectorError):
    """A record with this name already exists (a user, a token name)."""

    code = Code.ALREADY_EXISTS


class InvalidInput(InspectorError):
    """A form field, query parameter or CLI argument does not hold an acceptable value."""

    code = Code.INPUT_INVALID
