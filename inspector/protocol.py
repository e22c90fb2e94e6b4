"""The wire contract between edge agents and workers: message models and topic names.

Nothing else in Inspector builds topic strings or message dicts by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError, from_json

from inspector.errors import Code, RejectedInput, RequestRefused
from inspector.fieldrules import (
    NoteText,
    OperatorName,
    PartId,
    Sha256Hex,
    Slug,
    limits_of,
    shown,
)
from inspector.quality.adapters import AdapterRef
from inspector.quality.decision import Decision as Decision
from inspector.safetext import excerpt
from inspector.settings import SLUG, LimitSettings

log = logging.getLogger(__name__)

TOPIC_ROOT = "inspector/v1"
REQUEST_SCHEMA: Final = "inspector.request/v1"
VERDICT_SCHEMA: Final = "inspector.verdict/v1"
REJECTION_SCHEMA: Final = "inspector.rejection/v1"
RATIONALE_SCHEMA: Final = "inspector.rationale/v1"
STATUS_SCHEMA: Final = "inspector.worker-status/v1"
ADAPTER_CONTROL_SCHEMA: Final = "inspector.adapter-control/v1"
CANARY_HEALTH_SCHEMA: Final = "inspector.canary-health/v1"

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp")
AUDIO_TYPES = ("audio/wav", "audio/flac", "audio/ogg")


# Decoded from base64 by pydantic-core (see _MediaPart's config), not in Python: it is the
# largest per-request cost of parsing a request.
Base64Data = Annotated[bytes, WithJsonSchema({"type": "string", "contentEncoding": "base64"})]


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes: the content address used on the wire and in the blob store."""
    return hashlib.sha256(data).hexdigest()


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(exclude_none=True).encode()


class _MediaPart(_Message):
    model_config = ConfigDict(
        extra="forbid", frozen=True, val_json_bytes="base64", ser_json_bytes="base64"
    )

    data: Base64Data = Field(title="The encoded file, base64")
    sha256: Sha256Hex = Field(title="sha256 of the decoded bytes, lowercase hex")

    @model_validator(mode="after")
    def _checksum_matches(self) -> _MediaPart:
        if sha256_hex(self.data) != self.sha256:
            raise PydanticCustomError(
                Code.PAYLOAD_CHECKSUM_MISMATCH.value,
                "sha256 of the data does not match the declared sha256: the payload was "
                "corrupted or built wrongly",
            )
        return self


class ImagePart(_MediaPart):
    content_type: Literal["image/jpeg", "image/png", "image/webp", "image/bmp"]

    @model_validator(mode="after")
    def _within_size(self, info: ValidationInfo) -> ImagePart:
        limit = limits_of(info).max_image_bytes
        if len(self.data) > limit:
            raise PydanticCustomError(
                Code.IMAGE_TOO_LARGE.value,
                "photo is {size} bytes, above the {limit}-byte limit: resize or re-encode it",
                {"size": len(self.data), "limit": limit},
            )
        return self

    @classmethod
    def from_bytes(cls, content_type: str, data: bytes) -> ImagePart:
        """Wrap encoded photo bytes, computing the checksum."""
        return cls.model_validate(
            {"content_type": content_type, "data": data, "sha256": sha256_hex(data)}
        )


class AudioPart(_MediaPart):
    content_type: Literal["audio/wav", "audio/flac", "audio/ogg"]

    @model_validator(mode="after")
    def _within_size(self, info: ValidationInfo) -> AudioPart:
        limit = limits_of(info).max_audio_bytes
        if len(self.data) > limit:
            raise PydanticCustomError(
                Code.AUDIO_TOO_LARGE.value,
                "voice note is {size} bytes, above the {limit}-byte limit",
                {"size": len(self.data), "limit": limit},
            )
        return self

    @classmethod
    def from_bytes(cls, content_type: str, data: bytes) -> AudioPart:
        """Wrap encoded audio bytes, computing the checksum."""
        return cls.model_validate(
            {"content_type": content_type, "data": data, "sha256": sha256_hex(data)}
        )


class InspectionRequest(_Message):
    """Edge → worker: one inspection of one part."""

    schema_: Literal["inspector.request/v1"] = Field(REQUEST_SCHEMA, alias="schema")
    request_id: UUID = Field(title="Chosen by the edge at capture; stable across retries")
    site: Slug
    line: Slug
    station: Slug
    part_id: PartId
    captured_at: AwareDatetime
    images: list[ImagePart] = Field(min_length=1)
    audio: AudioPart | None = None
    operator: OperatorName | None = None
    note: NoteText | None = Field(None, title="Typed by the operator; newlines and tabs allowed")
    adapter: Slug | None = Field(None, title="Site adapter to use instead of the site default")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> InspectionRequest:
        limits = limits_of(info)
        if len(self.images) > limits.max_images:
            # No field in the error's location: the message names the field itself.
            raise PydanticCustomError(
                Code.PAYLOAD_INVALID.value,
                "images: {count} photos in one request, at most {limit} allowed",
                {"count": len(self.images), "limit": limits.max_images},
            )
        return self

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def fingerprint(self) -> str:
        """sha256 of the request's content with media replaced by their hashes.

        Two deliveries of the same capture share a fingerprint; a different capture
        reusing a request_id does not.
        """
        # Media are represented by their hashes, so nothing large is serialised here.
        body = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"images", "audio"}
        )
        body["images"] = [[i.content_type, i.sha256] for i in self.images]
        if self.audio is not None:
            body["audio"] = [self.audio.content_type, self.audio.sha256]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return sha256_hex(canonical.encode())

    @property
    def station_key(self) -> StationKey:
        """The (site, line, station) this request belongs to."""
        return StationKey(self.site, self.line, self.station)


class DefectFinding(_Message):
    type: Slug
    where: str | None = Field(None, max_length=200)


class RationaleState(StrEnum):
    """What became of a verdict's rationale (and the voice note's transcript).

    The verdict is committed and published as soon as the prefill gives P(PASS); the
    rationale is decoded afterwards and follows as a RationaleMessage on the station's
    rationale topic, which also updates the stored verdict.
    """

    PENDING = "pending"  # a rationale message follows
    PRODUCED = "produced"  # written (verdicts from before verdict-first are all produced)
    SKIPPED = "skipped"  # the site's rationale policy asks none for this verdict
    NOT_PRODUCED = "not_produced"  # the worker stopped or failed before writing it


class Judgement(_Message):
    """What the model decided about one inspection: the verdict's fields, defined only here.

    The engine's result, the wire message, the `verdicts` table, the store's query results
    and every verdict the CLI prints carry these fields under these names, so a new field is
    one line here plus one migration.
    """

    verdict: Decision
    confidence: float = Field(ge=0, le=1, title="max(P(PASS), P(FAIL)) from the verdict token")
    p_pass: float = Field(ge=0, le=1, title="P(PASS) normalised over PASS and FAIL")
    rationale: str = Field("", title="The model's reasons; empty until the rationale arrives")
    rationale_state: RationaleState = Field(
        RationaleState.PRODUCED,
        title="pending: a rationale message follows; produced; skipped: the site's rationale "
        "policy asks none for this verdict; not_produced: its worker stopped before writing it",
    )
    transcript: str | None = None
    defects: list[DefectFinding] = Field(default_factory=list)
    model: str
    adapter: str
    adapter_version: int | None = Field(
        None, title="Registry version of the site adapter (none: the base or a named adapter)"
    )
    adapter_fallback: bool = Field(False, title="The requested adapter was unknown")
    prompt_version: str
    note_disagrees: bool = Field(
        False,
        title="The operator's note (typed, or the voice note's transcript) reports a defect on "
        "a PASS or says the part is fine on a FAIL",
    )


class PartKey(_Message):
    """Which inspection a verdict is about: the request and the station's part."""

    request_id: UUID
    site: Slug
    line: Slug
    station: Slug
    part_id: str


class _VerdictSchema(_Message):
    schema_: Literal["inspector.verdict/v1"] = Field(VERDICT_SCHEMA, alias="schema")


class VerdictMessage(Judgement, PartKey, _VerdictSchema):
    """Worker → edge: the decision on one inspection, published after it is committed."""

    worker_id: str
    latency_ms: float = Field(ge=0)
    decided_at: AwareDatetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def with_rationale(self, rationale: RationaleMessage) -> VerdictMessage:
        """This verdict as it reads once the rationale that followed it is written in."""
        return self.model_copy(
            update={
                "rationale_state": rationale.rationale_state,
                "rationale": rationale.rationale,
                "transcript": rationale.transcript,
                "defects": rationale.defects,
                # A flag never goes away: the transcript can only add one.
                "note_disagrees": self.note_disagrees or rationale.note_disagrees,
            }
        )


# What a stored verdict row holds besides its inspection: the judgement and who made it when.
VERDICT_FIELDS: tuple[str, ...] = (*Judgement.model_fields, "worker_id", "latency_ms", "decided_at")
PART_FIELDS: tuple[str, ...] = tuple(PartKey.model_fields)


def judgement_of(source: object) -> dict[str, Any]:
    """The judgement fields read from any object that carries them (a result, a row)."""
    return {name: getattr(source, name) for name in Judgement.model_fields}


class RationaleMessage(PartKey):
    """Worker → edge: the rationale of a verdict published earlier, after the decode.

    Published on the station's rationale topic once the stored verdict is updated; a
    verdict's rationale is final after it (`rationale_state` produced, skipped — the
    message then carries only the transcript — or not_produced, with `reason`).
    """

    schema_: Literal["inspector.rationale/v1"] = Field(RATIONALE_SCHEMA, alias="schema")
    rationale_state: Literal[
        RationaleState.PRODUCED, RationaleState.SKIPPED, RationaleState.NOT_PRODUCED
    ]
    rationale: str = ""
    transcript: str | None = None
    defects: list[DefectFinding] = Field(default_factory=list)
    note_disagrees: bool = Field(
        False, title="The verdict's note_disagrees, now that the transcript is known"
    )
    reason: str | None = Field(
        None, title="Why it was not produced: a stable code, e.g. rationale.worker_lost"
    )
    worker_id: str = Field(title="The worker that wrote it (or marked it not produced)")
    written_at: AwareDatetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class RejectionMessage(_Message):
    """Worker → edge: a request that was refused, and why."""

    schema_: Literal["inspector.rejection/v1"] = Field(REJECTION_SCHEMA, alias="schema")
    request_id: UUID | None = None
    site: Slug | None = None
    line: Slug | None = None
    station: Slug | None = None
    code: str = Field(title="Stable machine-readable reason, e.g. image.undecodable")
    message: str = Field(title="What is wrong and what to do about it")
    payload_sha256: Sha256Hex
    worker_id: str
    rejected_at: AwareDatetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class ShadowAssignment(_Message):
    """A site's shadow adapter: a candidate judging `share` of its live requests again.

    Its verdicts are stored as shadow verdicts, never published nor counted as the
    inspection's; see `inspector.train.registry.shadow`.
    """

    name: Slug
    version: int = Field(ge=1)
    sha256: Sha256Hex
    share: float = Field(gt=0, le=1, title="Share of the site's live requests judged again")

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def adapter(self) -> AdapterRef:
        """The shadow adapter's registry version."""
        return AdapterRef(self.name, self.version, self.sha256)


class AdapterAnnouncement(_Message):
    """Retained on a site's control topic: the adapter its workers must serve now.

    All of name, version and sha256, or none of them: the site then runs with no adapter.
    Workers check it against the registry and the file's sha256 before loading it.
    """

    schema_: Literal["inspector.adapter-control/v1"] = Field(ADAPTER_CONTROL_SCHEMA, alias="schema")
    site: Slug
    name: Slug | None = None
    version: int | None = Field(None, ge=1)
    sha256: Sha256Hex | None = None
    announced_at: AwareDatetime
    # Absent: the site has no shadow adapter (and a worker serving one stops it).
    shadow: ShadowAssignment | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _all_or_nothing(self) -> AdapterAnnouncement:
        given = [self.name is not None, self.version is not None, self.sha256 is not None]
        if any(given) and not all(given):
            raise ValueError("name, version and sha256 must be given together (or none of them)")
        return self

    @classmethod
    def of(
        cls,
        site: str,
        adapter: AdapterRef | None,
        announced_at: datetime,
        shadow: ShadowAssignment | None = None,
    ) -> AdapterAnnouncement:
        """The announcement that `site` serves `adapter` (None: no site adapter)."""
        if adapter is None:
            return cls(site=site, announced_at=announced_at, shadow=shadow)
        return cls(
            site=site,
            name=adapter.name,
            version=adapter.version,
            sha256=adapter.sha256,
            announced_at=announced_at,
            shadow=shadow,
        )

    @property
    def adapter(self) -> AdapterRef | None:
        """The adapter version announced, or None: the site runs with no site adapter."""
        if self.name is None or self.version is None or self.sha256 is None:
            return None
        return AdapterRef(self.name, self.version, self.sha256)

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class SiteAdapterState(_Message):
    """Which adapter a worker serves for one site, and what went wrong with the announced one."""

    site: Slug
    state: Literal["serving", "failed"] = Field(
        "serving",
        title="failed: the last announced adapter could not be loaded; the one named here serves",
    )
    name: str | None = Field(None, title="The adapter served (none: the base, no site LoRA)")
    version: int | None = None
    sha256: str | None = None
    code: str | None = Field(
        None, title="Stable code of the failure, e.g. adapter.checksum_mismatch"
    )
    error: str | None = Field(
        None, title="Why the announced adapter could not be loaded (the previous one serves)"
    )
    shadow: ShadowAssignment | None = Field(
        None, title="The shadow adapter judging a share of the site's requests again, if any"
    )
    shadow_error: str | None = Field(
        None,
        title="Why the announced shadow adapter could not be loaded (requests are judged "
        "once, as before)",
    )

    @classmethod
    def serving(cls, site: str, adapter: AdapterRef | None) -> SiteAdapterState:
        """`site` serves `adapter` (None: the base, no site LoRA)."""
        if adapter is None:
            return cls(site=site)
        return cls(site=site, name=adapter.name, version=adapter.version, sha256=adapter.sha256)

    @property
    def adapter(self) -> AdapterRef | None:
        """The adapter version served, or None: the base."""
        if self.name is None or self.version is None or self.sha256 is None:
            return None
        return AdapterRef(self.name, self.version, self.sha256)


# "unhealthy": serving, but a group of requests could be neither committed nor rejected.
WorkerState = Literal["online", "draining", "offline", "unhealthy"]


class WorkerStatus(_Message):
    """Retained on the worker's status topic; the broker's last will sets `offline`."""

    schema_: Literal["inspector.worker-status/v1"] = Field(STATUS_SCHEMA, alias="schema")
    worker_id: str
    state: WorkerState
    version: str
    model: str | None = None
    adapters: list[str] = Field(default_factory=list)
    site_adapters: list[SiteAdapterState] = Field(default_factory=list)
    updated_at: AwareDatetime
    sites: list[Slug] = Field(default_factory=list, title="Sites it serves (empty: every site)")
    backlog: bool = Field(
        False,
        title="Requests wait at the broker for this worker: it holds as many unacknowledged "
        "requests as the broker may send it. Stations hold back re-sends meanwhile",
    )
    heartbeat_s: float | None = Field(
        None, title="While online, the status is published again at least this often", gt=0
    )
    settle_timeouts: int = Field(
        0,
        title="Requests rejected with internal.timeout since the worker started: not answered "
        "within worker.settle_timeout_s",
        ge=0,
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class CanaryHealth(_Message):
    """Retained by the canary on a worker's health topic: how it answered its golden parts."""

    schema_: Literal["inspector.canary-health/v1"] = Field(CANARY_HEALTH_SCHEMA, alias="schema")
    worker_id: str
    state: Literal["ok", "failing", "idle"] = Field(
        title="ok: every golden part answered as reviewed in the last period; failing: a "
        "mismatch or a missing answer; idle: no golden part for its sites"
    )
    adapters: list[str] = Field(
        default_factory=list, title="site=adapter@version of the answers judged"
    )
    checked: int = Field(0, ge=0, title="Golden parts sent in the last period")
    mismatches: int = Field(0, ge=0, title="Answers unlike the reviewed one in the last period")
    missing: int = Field(0, ge=0, title="Golden parts not answered within the last period")
    problems: list[str] = Field(
        default_factory=list, title="The first few mismatches and missing answers, in words"
    )
    period_s: float = Field(gt=0)
    updated_at: AwareDatetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> bytes:
        """The message as UTF-8 JSON, ready to publish."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


def parse_canary_health(payload: bytes) -> CanaryHealth:
    """Parse the canary's retained word on a worker."""
    return CanaryHealth.model_validate_json(payload)


MESSAGES: dict[str, type[BaseModel]] = {
    "request": InspectionRequest,
    "verdict": VerdictMessage,
    "rationale": RationaleMessage,
    "rejection": RejectionMessage,
    "worker-status": WorkerStatus,
    "adapter-control": AdapterAnnouncement,
    "canary-health": CanaryHealth,
}


def message_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every message, keyed by message name."""
    return {
        name: model.model_json_schema(by_alias=True, mode="serialization")
        for name, model in MESSAGES.items()
    }


def utcnow() -> datetime:
    """Timezone-aware now, as every message timestamp must be."""
    return datetime.now(UTC)


# --- topics -----------------------------------------------------------------------------


class TopicKind(StrEnum):
    REQUEST = "request"
    VERDICT = "verdict"
    RATIONALE = "rationale"
    REJECTED = "rejected"
    TRIGGER = "trigger"


@dataclass(frozen=True, slots=True)
class StationKey:
    site: str
    line: str
    station: str

    def topic(self, kind: TopicKind) -> str:
        """This station's topic of the given kind."""
        return station_topic(self.site, self.line, self.station, kind)


_SLUG = re.compile(SLUG)


def _check_slug(value: str, what: str) -> str:
    if not _SLUG.fullmatch(value):
        raise RejectedInput(
            Code.TOPIC_INVALID,
            f"{what} {excerpt(value)} must be lowercase letters, digits and '-', 1-64 characters",
        )
    return value


def station_topic(site: str, line: str, station: str, kind: TopicKind) -> str:
    """`inspector/v1/{site}/{line}/{station}/{kind}`, with each part checked."""
    parts = (_check_slug(site, "site"), _check_slug(line, "line"), _check_slug(station, "station"))
    return f"{TOPIC_ROOT}/{parts[0]}/{parts[1]}/{parts[2]}/{TopicKind(kind).value}"


def request_topic(site: str, line: str, station: str) -> str:
    return station_topic(site, line, station, TopicKind.REQUEST)


def verdict_topic(site: str, line: str, station: str) -> str:
    return station_topic(site, line, station, TopicKind.VERDICT)


def rationale_topic(site: str, line: str, station: str) -> str:
    return station_topic(site, line, station, TopicKind.RATIONALE)


def rejected_topic(site: str, line: str, station: str) -> str:
    return station_topic(site, line, station, TopicKind.REJECTED)


def status_topic(worker_id: str) -> str:
    """Retained status topic of one worker."""
    return f"{TOPIC_ROOT}/workers/{_check_slug(worker_id, 'worker id')}/status"


def worker_status_filter() -> str:
    """Topic filter matching every worker's retained status."""
    return f"{TOPIC_ROOT}/workers/+/status"


def adapter_control_topic(site: str) -> str:
    """Retained control topic announcing the site's active adapter."""
    return f"{TOPIC_ROOT}/control/adapters/{_check_slug(site, 'site')}"


def adapter_control_filter() -> str:
    """Topic filter over every site's adapter control topic."""
    return f"{TOPIC_ROOT}/control/adapters/+"


# Golden parts: the canary sends each worker its own copies, on topics no station reads, so a
# canary answer never reaches a station's board (see inspector.canary).


def _canary_topic(worker_id: str, leaf: str) -> str:
    return f"{TOPIC_ROOT}/canary/{_check_slug(worker_id, 'worker id')}/{leaf}"


def canary_request_topic(worker_id: str) -> str:
    """Where the canary sends one worker its golden parts (a plain subscription, not shared)."""
    return _canary_topic(worker_id, "request")


def canary_verdict_topic(worker_id: str) -> str:
    """Where a worker answers the canary: verdict messages that are never stored."""
    return _canary_topic(worker_id, "verdict")


def canary_verdict_filter() -> str:
    """Topic filter over every worker's canary answers."""
    return f"{TOPIC_ROOT}/canary/+/verdict"


def canary_health_topic(worker_id: str) -> str:
    """Retained: the canary's word on one worker (CanaryHealth)."""
    return _canary_topic(worker_id, "health")


def canary_health_filter() -> str:
    """Topic filter over the canary's word on every worker."""
    return f"{TOPIC_ROOT}/canary/+/health"


def is_canary_topic(topic: str) -> bool:
    """True for a topic of the canary's (its requests, answers and health)."""
    return topic.startswith(f"{TOPIC_ROOT}/canary/")


def station_filter(
    kind: TopicKind, site: str | None = None, line: str | None = None, station: str | None = None
) -> str:
    """Topic filter over stations: a part left out (None) matches any value."""
    parts = [
        _check_slug(value, what) if value is not None else "+"
        for value, what in ((site, "site"), (line, "line"), (station, "station"))
    ]
    return f"{TOPIC_ROOT}/{'/'.join(parts)}/{TopicKind(kind).value}"


def request_filter(site: str | None = None) -> str:
    """Topic filter matching the requests of every station (of one site, when given)."""
    return station_filter(TopicKind.REQUEST, site)


def shared_request_subscription(group: str, site: str | None = None) -> str:
    """Shared subscription so the workers of one group split the requests."""
    return f"$share/{_check_slug(group, 'group')}/{request_filter(site)}"


@dataclass(frozen=True, slots=True)
class StationTopic:
    station: StationKey
    kind: TopicKind


def parse_station_topic(topic: str) -> StationTopic:
    """Split a station topic into its parts, refusing anything that is not one."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise RejectedInput(
            Code.TOPIC_INVALID, f"{excerpt(topic)} is not an Inspector station topic"
        )
    try:
        kind = TopicKind(parts[5])
    except ValueError:
        raise RejectedInput(
            Code.TOPIC_INVALID,
            f"{excerpt(topic)} ends in {excerpt(parts[5])}, not a known topic kind",
        ) from None
    key = StationKey(
        _check_slug(parts[2], "site"),
        _check_slug(parts[3], "line"),
        _check_slug(parts[4], "station"),
    )
    return StationTopic(key, kind)


# --- parsing ----------------------------------------------------------------------------

_OWN_CODES = {code.value: code for code in Code}
# A request nests three levels (message, images, photo); the JSON parser itself stops at
# a fixed depth, and a payload that reaches it is refused with its own code.
_TOO_DEEP = "recursion limit exceeded"
_CONTENT_TYPE_CODES = {"images": Code.IMAGE_UNSUPPORTED_TYPE, "audio": Code.AUDIO_UNSUPPORTED_TYPE}
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true or false"}

# Pydantic's error types, in words an operator can act on; the field name is prefixed.
_WORDS: dict[str, str] = {
    "missing": "missing",
    "extra_forbidden": "is not a field of this message; remove it",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "uuid_type": "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000",
    "uuid_parsing": "is not a UUID (such as 123e4567-e89b-12d3-a456-426614174000)",
    "datetime_type": "must be a date and time such as 2026-11-23T10:00:00+09:00",
    "datetime_parsing": "is not a date and time (ISO 8601, such as 2026-11-23T10:00:00+09:00)",
    "datetime_from_date_parsing": "is not a date and time (ISO 8601, such as "
    "2026-11-23T10:00:00+09:00)",
    "timezone_aware": "has no timezone; add an offset such as +09:00 or Z",
    "too_short": "must not be empty",
    "bytes_type": "must be a base64 string",
}


def _where(loc: tuple[int | str, ...]) -> str:
    """A field path as an operator reads it: images[0].content_type."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + shown(part, 40)
    return out


def _words(err: Any) -> tuple[Code, str]:
    """The code and the message of one pydantic error, field first."""
    kind, loc = err["type"], tuple(err["loc"])
    where = _where(loc) or "payload"
    code = _OWN_CODES.get(kind)
    if code is not None:
        # A whole-message rule (loc empty) names its field in its own words.
        return code, f"{where}: {err['msg']}" if loc else str(err["msg"])
    if kind == "bytes_invalid_encoding":
        return Code.PAYLOAD_BAD_BASE64, f"{where}: is not valid base64 ({err['msg']})"
    if kind == "literal_error" and loc and loc[-1] == "content_type":
        code = _CONTENT_TYPE_CODES.get(str(loc[0]), Code.PAYLOAD_INVALID)
        given = err.get("input")
        what = excerpt(given) if isinstance(given, str) else "this value"
        expected = err.get("ctx", {}).get("expected", "")
        return code, f"{where}: {what} is not a supported type; send one of {expected}"
    words = _WORDS.get(kind)
    if words is None:
        return Code.PAYLOAD_INVALID, f"{where}: {err['msg']}"
    return Code.PAYLOAD_INVALID, f"{where}: {words}"


def _rejection_from(exc: ValidationError) -> RejectedInput:
    """One refusal from a validation error: the most specific code, each problem in words."""
    found = [_words(err) for err in exc.errors(include_url=False, include_input=True)]
    for code, text in found:
        if code is not Code.PAYLOAD_INVALID:
            return RejectedInput(code, text)
    shown_ = [text for _, text in found[:5]]
    more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
    return RejectedInput(Code.PAYLOAD_INVALID, "; ".join(shown_) + more)


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), "null" if value is None else "a number")


def read_json(payload: bytes) -> Any:
    """Parse JSON once, strictly (no NaN, no trailing data); refusals carry a stable code."""
    try:
        return from_json(payload, allow_inf_nan=False)
    except ValueError as exc:
        text = str(exc)
        if _TOO_DEEP in text:
            raise RejectedInput(
                Code.PAYLOAD_TOO_DEEP,
                f"payload nests arrays or objects too deeply ({shown(text, 80)}); "
                "a request nests three levels",
            ) from None
        raise RejectedInput(
            Code.PAYLOAD_NOT_JSON, f"payload is not JSON: {shown(text, 120)}"
        ) from None


def _request_id_of(body: Any) -> UUID | None:
    """The request_id of a parsed body, if it holds a readable one (for the rejection record)."""
    value = body.get("request_id") if isinstance(body, dict) else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _check_schema(body: Any) -> None:
    if not isinstance(body, dict):
        raise RejectedInput(
            Code.PAYLOAD_INVALID,
            f"payload must be a JSON object (an {REQUEST_SCHEMA} message), not {_type_name(body)}",
        )
    if "schema" not in body:
        raise RejectedInput(
            Code.PAYLOAD_UNSUPPORTED_SCHEMA,
            f"schema: missing; set it to {REQUEST_SCHEMA!r}, the schema this worker speaks",
        )
    schema = body["schema"]
    if schema != REQUEST_SCHEMA:
        what = excerpt(schema) if isinstance(schema, str) else _type_name(schema)
        raise RejectedInput(
            Code.PAYLOAD_UNSUPPORTED_SCHEMA,
            f"schema: {what} is not a schema this worker speaks; it speaks {REQUEST_SCHEMA!r}",
        )


def parse_request(
    payload: bytes, limits: LimitSettings | None = None, topic: str | None = None
) -> InspectionRequest:
    """Validate a request payload strictly; raise RequestRefused with a stable code.

    The payload is parsed once; the refusal carries the request_id when the payload held a
    readable one, so the rejection record can name it.
    """
    limits = limits or LimitSettings()
    if len(payload) > limits.max_payload_bytes:
        raise RequestRefused(
            Code.PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes, above the {limits.max_payload_bytes}-byte limit",
            None,
        )
    body: Any = None
    try:
        body = read_json(payload)
        _check_schema(body)
        try:
            # Base64 media are decoded inside pydantic-core (val_json_bytes) here too.
            request = InspectionRequest.model_validate(body, context={"limits": limits})
        except ValidationError as exc:
            raise _rejection_from(exc) from None
        if topic is not None:
            _check_topic(request, topic)
    except RejectedInput as exc:
        raise RequestRefused(exc.code, exc.reason, _request_id_of(body)) from None
    return request


def _check_topic(request: InspectionRequest, topic: str) -> None:
    where = parse_station_topic(topic)
    if where.station != request.station_key or where.kind is not TopicKind.REQUEST:
        raise RejectedInput(
            Code.PAYLOAD_TOPIC_MISMATCH,
            f"request for {request.site}/{request.line}/{request.station} arrived on "
            f"topic {excerpt(topic)}",
        )


_Answer = TypeVar("_Answer", bound=BaseModel)
_ignored_fields: set[tuple[str, str]] = set()


def _answer(model: type[_Answer], payload: bytes) -> _Answer:
    """A worker's answer to a station, with top-level fields a newer worker added ignored.

    Workers and stations are upgraded apart: within one schema version (`…/v1`) a worker
    may add optional fields, and a station reading with the older model keeps working.
    Anything else wrong (a missing or malformed field, an unknown nested one, another
    schema) still raises ValidationError. Each ignored field is logged once.
    """
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        errors = exc.errors()
        if not all(e["type"] == "extra_forbidden" and len(e["loc"]) == 1 for e in errors):
            raise
        data = from_json(payload)
        for error in errors:
            name = str(error["loc"][0])
            data.pop(name, None)
            if (model.__name__, name) not in _ignored_fields and len(_ignored_fields) < 64:
                _ignored_fields.add((model.__name__, name))
                log.warning(
                    "%s field %r is not known to this version; ignored (a newer worker sent it)",
                    model.__name__,
                    excerpt(name),
                )
        return model.model_validate(data)


def parse_verdict(payload: bytes) -> VerdictMessage:
    """Parse a verdict message (edge side); fields a newer worker added are ignored."""
    return _answer(VerdictMessage, payload)


def parse_rationale(payload: bytes) -> RationaleMessage:
    """A rationale message from its JSON payload; raises ValidationError. Fields a newer
    worker added are ignored."""
    return _answer(RationaleMessage, payload)


def parse_rejection(payload: bytes) -> RejectionMessage:
    """Parse a rejection message (edge side); fields a newer worker added are ignored."""
    return _answer(RejectionMessage, payload)


def parse_status(payload: bytes) -> WorkerStatus:
    """Parse a worker status message."""
    return WorkerStatus.model_validate_json(payload)


def parse_adapter_announcement(payload: bytes, topic: str | None = None) -> AdapterAnnouncement:
    """Validate a control-topic payload; raise RejectedInput with a stable code."""
    body = read_json(payload)
    try:
        message = AdapterAnnouncement.model_validate(body)
    except ValidationError as exc:
        raise _rejection_from(exc) from None
    if topic is not None and topic != adapter_control_topic(message.site):
        raise RejectedInput(
            Code.PAYLOAD_TOPIC_MISMATCH,
            f"adapter announcement for site {message.site!r} arrived on topic {excerpt(topic)}",
        )
    return message
