"""Settings: one TOML file (``--config``) overlaid by ``INSPECTOR_*`` environment variables."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inspector.errors import ConfigError
from inspector.quality.notes import NoteDisagreement
from inspector.safetext import excerpt

DEFAULT_CONFIG = Path("config/inspector.toml")
ENV_PREFIX = "INSPECTOR_"
ENV_NESTED = "__"
SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"
MiB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Section):
    enabled: bool = Field(False, title="Connect to the broker over TLS")
    ca_certs: Path | None = Field(None, title="CA bundle that signed the broker certificate")
    certfile: Path | None = Field(None, title="Client certificate (mutual TLS)")
    keyfile: Path | None = Field(None, title="Client private key (mutual TLS)")
    insecure: bool = Field(False, title="Skip broker hostname verification (testing only)")

    @model_validator(mode="after")
    def _cert_needs_key(self) -> TlsSettings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile must be given together")
        return self


class BrokerSettings(_Section):
    host: str = Field("127.0.0.1", title="MQTT broker host", min_length=1)
    port: int = Field(1883, title="MQTT broker port", ge=1, le=65535)
    username: str | None = Field(None, title="Broker user name")
    password: SecretStr | None = Field(None, title="Broker password (prefer the environment)")
    tls: TlsSettings = Field(default_factory=TlsSettings, title="TLS options")
    keepalive_s: int = Field(30, title="MQTT keepalive in seconds", ge=5, le=3600)
    session_expiry_s: int = Field(
        86400,
        title="How long the broker keeps a disconnected session (workers use "
        "worker.session_expiry_s)",
        ge=0,
    )
    connect_timeout_s: float = Field(10.0, title="Give up one connection attempt after", gt=0)
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        title="MQTT version: 3.1.1 only for a broker without v5 (the demo's embedded one): no "
        "shared subscriptions, so one worker; no refusal reasons in PUBACK",
    )

    @model_validator(mode="after")
    def _password_needs_user(self) -> BrokerSettings:
        if self.password is not None and not self.username:
            raise ValueError("a broker password needs a username")
        return self


class StoreSettings(_Section):
    url: str = Field("sqlite:///var/inspector.db", title="SQLAlchemy database URL")
    blob_dir: Path = Field(Path("var/blobs"), title="Directory of content-addressed media blobs")
    rejected_payload_limit: int = Field(
        256 * 1024, title="Keep rejected payloads up to this many bytes", ge=0
    )

    @model_validator(mode="after")
    def _known_backend(self) -> StoreSettings:
        if not self.url.startswith(("sqlite", "postgresql")):
            raise ValueError("store url must be a sqlite:// or postgresql+psycopg:// URL")
        return self


class LimitSettings(_Section):
    max_payload_bytes: int = Field(16 * MiB, title="Largest request message", gt=0)
    max_images: int = Field(8, title="Most photos in one request", ge=1, le=64)
    max_image_bytes: int = Field(8 * MiB, title="Largest encoded photo", gt=0)
    max_pixels: int = Field(40_000_000, title="Most pixels in a photo (decompression bombs)", gt=0)
    min_image_side: int = Field(16, title="Smallest photo width or height in pixels", ge=1)
    max_audio_bytes: int = Field(8 * MiB, title="Largest encoded voice note", gt=0)
    max_audio_seconds: float = Field(60.0, title="Longest voice note in seconds", gt=0)
    max_note_chars: int = Field(2000, title="Longest typed operator note", ge=0)


class DefectSpec(_Section):
    name: str = Field(title="Defect type, as reviewers and verdicts name it", pattern=SLUG)
    description: str = Field(title="What the defect looks like", min_length=1)


class SiteProfile(_Section):
    part: str = Field("the inspected part", title="What is being inspected", min_length=1)
    instructions: str = Field(
        "Decide whether the part passes visual inspection.", title="Inspection instructions"
    )
    defects: tuple[DefectSpec, ...] = Field((), title="Defect catalogue")
    voice_hint: str = Field(
        "The operator may describe what they saw, heard or measured.",
        title="What the voice note may add",
    )
    threshold: float = Field(0.7, title="Below this confidence the verdict is REVIEW", ge=0, le=1)
    adapter: str | None = Field(None, title="Site LoRA adapter name", pattern=SLUG)
    escape_target: float = Field(
        0.02, title="Highest acceptable share of FAIL parts that pass (escape rate)", ge=0, le=1
    )
    rationale: Literal["all", "fail_and_review"] = Field(
        "all",
        title="Which verdicts get a rationale: all, or FAIL and REVIEW only (on a line where "
        "most parts pass, a PASS then costs no decoding)",
    )
    min_shadow_reviews: int = Field(
        0,
        title="Fewest reviewed live inspections a candidate must have judged in the shadow "
        "before `inspector adapters promote` accepts it (0: no shadow run required)",
        ge=0,
    )
    note_disagreement: NoteDisagreement = Field(
        "flag",
        title="When the operator's note reports a defect on a PASS or says fine on a FAIL: "
        "off, flag the verdict, or review (flag it and make it REVIEW; a voice note is then "
        "transcribed before the verdict is published)",
    )


class ModelSettings(_Section):
    path: Path = Field(Path("var/models/tiny"), title="Local Phi4Multimodal model directory")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", title="Where the model runs")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", title="Weights dtype")
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        "auto", title="Attention kernel"
    )
    max_rationale_tokens: int = Field(48, title="Longest rationale in tokens", ge=0, le=1024)
    transcribe: bool = Field(False, title="Also transcribe voice notes")
    max_transcript_tokens: int = Field(96, title="Longest transcript in tokens", ge=1, le=2048)
    adapters_dir: Path = Field(
        Path("var/adapters"), title="Site adapter files (relative registry paths)"
    )
    compile: bool = Field(
        True, title="torch.compile the repeated blocks on a GPU (the first batches compile)"
    )
    quantization: Literal["none", "fp8"] = Field(
        "none",
        title="Linear layers of the language model and the vision tower in FP8 (per-row "
        "scales, torchao; needs an H100/H200-class GPU); LoRA adapters stay in the model dtype",
    )


class TrainSettings(_Section):
    min_reviews: int = Field(40, title="Fewest reviewed inspections a training run needs", ge=2)
    min_per_class: int = Field(
        8, title="Fewest reviews of each verdict (PASS and FAIL) a training run needs", ge=1
    )
    holdout_share: float = Field(
        0.33, title="Most recent share of the snapshot kept for evaluation", gt=0, lt=1
    )
    rank: int = Field(32, title="LoRA rank of a site adapter", ge=1, le=1024)
    alpha: int = Field(64, title="LoRA alpha (scale = alpha / rank)", gt=0)
    learning_rate: float = Field(1e-3, title="AdamW learning rate", gt=0)
    epochs: int = Field(14, title="Passes over the training split", ge=1, le=1000)
    batch_size: int = Field(8, title="Examples per optimiser step", ge=1, le=512)
    seed: int = Field(0, title="Seed of the adapter's initialisation and the data order")
    gradient_checkpointing: bool = Field(True, title="Recompute activations to save memory")
    rationale_weight: float = Field(
        0.0, title="Weight of the rationale tokens' loss beside the verdict token's", ge=0
    )


class WorkerSettings(_Section):
    worker_id: str = Field(
        default_factory=lambda: _slugify(socket.gethostname()),
        title="Stable worker id (also the MQTT client id: keep it across restarts)",
        pattern=SLUG,
    )
    group: str = Field("inspector-workers", title="Shared subscription group", pattern=SLUG)
    sites: tuple[Annotated[str, StringConstraints(pattern=SLUG)], ...] = Field(
        (), title="Serve only these sites (empty: every site)"
    )
    max_batch: int = Field(32, title="Largest inference batch", ge=1, le=1024)
    max_wait_ms: float = Field(20.0, title="Longest wait to fill a batch", ge=0)
    queue_size: int = Field(256, title="Requests held in memory before pausing intake", ge=1)
    receive_maximum: int = Field(64, title="Unacked messages the broker may send", ge=1, le=65535)
    session_expiry_s: int = Field(
        120,
        title="How long the broker keeps a stopped worker's session, and with it the requests "
        "it was handed (used instead of broker.session_expiry_s); short, so a worker that "
        "is gone for good stops stranding requests: stations re-send what it never answered",
        ge=0,
    )
    validation_threads: int = Field(2, title="Threads decoding media", ge=1, le=64)
    settle_timeout_s: float = Field(
        120.0,
        title="A request not answered this long after receipt (a hung decoder or model) is "
        "rejected with internal.timeout and acked; time while the store is unreachable does "
        "not count",
        gt=0,
    )
    rationale_timeout_s: float = Field(
        60.0,
        title="A verdict whose rationale has not arrived this long after the verdict (its "
        "worker stopped in between) is marked not produced by any live worker",
        gt=0,
    )
    metrics_port: int = Field(9464, title="Prometheus port (0 turns metrics off)", ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", title="Prometheus bind address")


class ReviewSettings(_Section):
    host: str = Field("127.0.0.1", title="Address the review app listens on")
    port: int = Field(8080, title="Port the review app listens on", ge=1, le=65535)
    secure_cookies: bool = Field(
        False, title="Send the session cookie only over HTTPS (set behind a TLS proxy)"
    )
    session_hours: float = Field(12.0, title="A login lasts this many hours", gt=0, le=24 * 30)
    audit_pass_percent: float = Field(
        5.0, title="Share of PASS verdicts sampled into the audit tab (percent)", ge=0, le=100
    )
    page_size: int = Field(50, title="Inspections per queue page", ge=1, le=500)
    max_login_failures: int = Field(
        5, title="Failed logins (per user name and per address) before a lockout", ge=1
    )
    lockout_minutes: float = Field(15.0, title="How long a lockout lasts", gt=0)
    account_backoff_max_s: float = Field(
        60.0,
        title="Longest wait an account's failures impose on addresses it never logged in "
        "from (the wait doubles from 1 s per failure past max_login_failures)",
        gt=0,
        le=3600,
    )
    trusted_proxies: tuple[str, ...] = Field(
        (),
        title="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and "
        "Forwarded headers name the real client (none: the TCP peer is the client)",
    )
    public_url: str | None = Field(
        None,
        title="The app's address as users reach it (https://review.example.com): absolute "
        "links use it and the Host header must name it",
        pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~\-/]*)?$",
    )
    allowed_hosts: tuple[str, ...] = Field(
        (), title="More Host header names to answer to, besides public_url's and localhost"
    )
    token_days: int = Field(90, title="An API token lasts this many days by default", ge=1)
    token_max_days: int = Field(365, title="The longest life an API token may be given", ge=1)

    @model_validator(mode="after")
    def _review_values(self) -> ReviewSettings:
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {excerpt(entry)} is not an address or network"
                ) from None
        if self.token_days > self.token_max_days:
            raise ValueError("token_days must not exceed token_max_days")
        return self


class CanarySettings(_Section):
    enabled: bool = Field(True, title="Send golden parts to every worker (`inspector canary`)")
    period_s: float = Field(
        60.0,
        title="Each golden part goes to each live worker once per period; an answer not "
        "back within it is missing",
        ge=1,
        le=86400,
    )
    tolerance: float = Field(
        0.05,
        title="Largest P(PASS) difference from the reference of the same adapter version",
        gt=0,
        le=1,
    )
    metrics_port: int = Field(9466, title="Prometheus port (0 turns metrics off)", ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", title="Prometheus bind address")


class FileSettings(BaseSettings):
    """Settings whose file values arrive as init arguments and the environment overrides them."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


class Settings(FileSettings):
    """Everything the worker, the CLI and the review app read; the edge has its own file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid", frozen=True
    )

    role: Literal["station", "worker", "review", "all-in-one"] = Field(
        "all-in-one",
        title="What this host runs: `inspector doctor` requires the checks it needs and "
        "only warns about optional services",
    )
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    sites: dict[str, SiteProfile] = Field(default_factory=dict, title="Site profiles by site slug")

    @model_validator(mode="after")
    def _site_keys_are_slugs(self) -> Settings:
        for key in self.sites:
            if not re.match(SLUG, key):
                raise ValueError(f"site name {key!r} must match {SLUG}")
        return self

    def site(self, name: str) -> SiteProfile:
        """The profile for a site, or the `default` profile, or built-in defaults."""
        return self.sites.get(name) or self.sites.get("default") or SiteProfile()


def _slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:64]
    return slug or "worker"


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax and I/O errors into a ConfigError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _env_name(env_prefix: str, loc: tuple[str, ...]) -> str:
    return env_prefix + ENV_NESTED.join(part.upper() for part in loc)


def _from_environment(env_prefix: str, loc: tuple[str, ...]) -> str | None:
    """The environment variable that set `loc` (or a section above it), if one did."""
    # pydantic-settings matches names case-insensitively, so this lookup does too.
    names = {name.upper() for name in os.environ}
    for end in range(len(loc), 0, -1):
        name = _env_name(env_prefix, loc[:end])
        if name in names:
            return name
    return None


_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def _toml_path(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def toml_line(path: Path, loc: tuple[str, ...]) -> int | None:
    """The 1-based line of `path` that sets the key `loc` (or the nearest table above it)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    table: tuple[str, ...] = ()
    best: tuple[int, int] | None = None  # (matched parts, line)
    for number, line in enumerate(lines, 1):
        if header := _TABLE.match(line):
            table = _toml_path(header.group(1))
            key: tuple[str, ...] = table
        elif found := _KEY.match(line):
            key = table + _toml_path(found.group(1))
        else:
            continue
        if key == loc[: len(key)] and (best is None or len(key) > best[0]):
            best = (len(key), number)
    return best[1] if best is not None else None


def _section_fields(model: type[BaseModel] | None, loc: tuple[str, ...]) -> list[str]:
    """The setting names valid where `loc` points (the model's fields along its path)."""
    for part in loc:
        if model is None:
            return []
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return list(model.model_fields) if model is not None else []


def _did_you_mean(model: type[BaseModel] | None, loc: tuple[str, ...]) -> str:
    known = _section_fields(model, loc[:-1])
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    where = f"[{'.'.join(loc[:-1])}]" if len(loc) > 1 else "the top level"
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"not a setting of {where}{hint}"


def describe_validation_error(
    exc: ValidationError,
    source: str,
    env_prefix: str,
    *,
    model: type[BaseModel] | None = None,
) -> str:
    """Each bad field: its dotted name, what is wrong, and the file line or variable that set it.

    `source` is the TOML file (its line is looked up) or a description such as "built-in
    defaults"; `model` lets an unknown key get the nearest valid one as a suggestion.
    """
    path = Path(source)
    is_file = path.is_file()
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        field = ".".join(loc) or "(top level)"
        got = err.get("input")
        unknown = err["type"] == "extra_forbidden"
        if unknown and loc:
            what = _did_you_mean(model, loc)
        else:
            value = excerpt(got) if isinstance(got, str) else repr(got)[:64]
            shown = "" if isinstance(got, dict) else f" (got {value})"
            what = f"{err['msg']}{shown}"
        lines.append(f"  {field}: {what}")
        env = _from_environment(env_prefix, loc) if loc else None
        line = toml_line(path, loc) if is_file and loc else None
        if env is not None:
            lines.append(f"    set by the environment variable {env}")
        elif line is not None:
            alternative = "" if unknown else f" (or by {_env_name(env_prefix, loc)})"
            lines.append(f"    set in {source} line {line}{alternative}")
        elif is_file:
            lines.append(
                f"    in {source} (file key {field}, or environment {_env_name(env_prefix, loc)})"
            )
        else:
            lines.append(f"    from {source}")
    return "\n".join(lines)


def load_settings(path: Path | None = None) -> Settings:
    """Settings from `path` (or config/inspector.toml when present) plus the environment."""
    chosen = path if path is not None else DEFAULT_CONFIG
    data: dict[str, Any] = {}
    if path is not None or chosen.exists():
        data = read_toml(chosen)
    source = str(chosen) if data or path is not None else "built-in defaults"
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(exc, source, ENV_PREFIX, model=Settings)
        ) from None
