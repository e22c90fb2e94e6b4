"""Edge agent settings: one TOML file overlaid by ``INSPECTOR_EDGE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from inspector.errors import ConfigError
from inspector.protocol import StationKey
from inspector.settings import (
    ENV_NESTED,
    SLUG,
    BrokerSettings,
    FileSettings,
    describe_validation_error,
    read_toml,
)

DEFAULT_EDGE_CONFIG = Path("config/edge.toml")
EDGE_ENV_PREFIX = "INSPECTOR_EDGE_"
MiB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationSettings(_Section):
    """Which station this agent is: the topics and the MQTT client id follow from it."""

    site: str = Field(title="Site slug", pattern=SLUG)
    line: str = Field(title="Line slug", pattern=SLUG)
    station: str = Field(title="Station slug", pattern=SLUG)
    operator: str | None = Field(
        None, title="Operator name sent with each capture", pattern=r"^[^\x00-\x1f\x7f]{1,64}$"
    )
    adapter: str | None = Field(None, title="Site adapter hint for the worker", pattern=SLUG)
    client_id: str | None = Field(
        None,
        title="MQTT client id (default edge-SITE-LINE-STATION); keep it stable for the session",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
    )

    @property
    def key(self) -> StationKey:
        """The station's (site, line, station) key for topics."""
        return StationKey(self.site, self.line, self.station)

    @property
    def mqtt_client_id(self) -> str:
        """The configured client id or one derived from the station."""
        return self.client_id or f"edge-{self.site}-{self.line}-{self.station}"


class CameraSettings(_Section):
    """The OpenCV photo source."""

    source: int | str | None = Field(
        None,
        title="OpenCV VideoCapture source: device index, rtsp:// or http:// URL, or a video file",
    )
    warmup_frames: int = Field(2, title="Frames discarded after opening (auto exposure)", ge=0)
    flush_frames: int = Field(
        2, title="Buffered frames dropped before each live capture (so the photo is fresh)", ge=0
    )
    loop_video: bool = Field(True, title="Rewind a video file when it ends")
    width: int | None = Field(None, title="Requested capture width", gt=0)
    height: int | None = Field(None, title="Requested capture height", gt=0)


class ImageSettings(_Section):
    """Downscaling and re-encoding at the edge, to keep payloads small."""

    max_side: int | None = Field(
        1600, title="Downscale photos whose longer side exceeds this (none: never)", ge=16
    )
    jpeg_quality: int = Field(88, title="JPEG quality when re-encoding", ge=10, le=100)
    reencode: bool = Field(
        False, title="Re-encode file photos as JPEG even when they need no resizing"
    )


class FolderSettings(_Section):
    """The watched folder trigger."""

    path: Path | None = Field(None, title="Watched folder; new photos are captured, then moved")
    done_dir: str = Field("done", title="Sub-folder for captured files", min_length=1)
    failed_dir: str = Field("failed", title="Sub-folder for files that are not usable photos")
    poll_s: float = Field(0.5, title="How often the folder is scanned", gt=0, le=60)
    settle_s: float = Field(
        0.5,
        title="A file must be unchanged this long before it is read (still being written)",
        ge=0,
    )


AudioMode = Literal["off", "push_to_talk", "fixed", "vad", "file"]


class AudioSettings(_Section):
    """Voice notes: how they are recorded and how long they may be."""

    mode: AudioMode = Field("off", title="How voice notes are recorded")
    device: int | str | None = Field(None, title="sounddevice input device (default device)")
    device_rate: int | None = Field(
        None,
        title="Record at this rate and resample to 16 kHz (for devices without 16 kHz)",
        ge=8000,
        le=192000,
    )
    fixed_s: float = Field(5.0, title="Length of a fixed-length note", gt=0)
    max_s: float = Field(30.0, title="Longest voice note", gt=0, le=60)
    vad_threshold_db: float = Field(-40.0, title="Level (dBFS) counted as speech", le=0)
    silence_timeout_s: float = Field(1.2, title="VAD stops after this much silence", gt=0)
    start_timeout_s: float = Field(8.0, title="VAD gives up when nobody speaks this long", gt=0)
    file: Path | None = Field(None, title="WAV file attached to each capture (mode = file)")

    @model_validator(mode="after")
    def _file_mode_needs_file(self) -> AudioSettings:
        if self.mode == "file" and self.file is None:
            raise ValueError("audio.mode = 'file' needs audio.file")
        if self.fixed_s > self.max_s:
            raise ValueError("audio.fixed_s must not exceed audio.max_s")
        return self


class TriggerSettings(_Section):
    """Keyboard, HTTP and MQTT triggers."""

    keyboard: bool = Field(True, title="Keys in the terminal: space capture, r note, q quit")
    http_port: int | None = Field(
        8750,
        title="Port of the local HTTP trigger (POST /capture); none turns it off",
        ge=0,
        le=65535,
    )
    http_host: str = Field("127.0.0.1", title="Bind address of the HTTP trigger")
    mqtt: bool = Field(True, title="Capture on messages to the station's trigger topic")
    default_part_id: str = Field(
        "{station}-{time}", title="Part id when the trigger names none ({station}, {seq}, {time})"
    )

    @model_validator(mode="after")
    def _known_placeholders(self) -> TriggerSettings:
        try:
            self.default_part_id.format(station="s", seq=1, time="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"triggers.default_part_id may use only {{station}}, {{seq}} and {{time}} ({exc})"
            ) from None
        return self


class SpoolSettings(_Section):
    """The durable outbox and how it is drained."""

    path: Path = Field(Path("var/edge-spool.db"), title="SQLite spool file")
    max_bytes: int = Field(
        512 * MiB, title="Disk budget for captures without an answer yet (sent or not)", ge=MiB
    )
    warn_fraction: float = Field(0.8, title="Warn when the spool is this full", gt=0, le=1)
    window: int = Field(8, title="Publishes awaiting PUBACK at once", ge=1, le=20)
    puback_timeout_s: float = Field(
        30.0, title="Warn when a PUBACK takes longer than this (the publish is kept)", gt=0
    )
    retry_min_s: float = Field(
        1.0, title="First delay before reconnecting or retrying a refused publish", gt=0
    )
    retry_max_s: float = Field(60.0, title="Longest such delay (the delay doubles up to it)", gt=0)
    resend_max_s: float = Field(
        300.0,
        title="Longest wait between re-sends of a capture without an answer (the wait starts "
        "at display.verdict_timeout_s and doubles up to this)",
        gt=0,
    )
    resend_hold_max_s: float = Field(
        1800.0,
        title="While a worker serving the site reports a backlog, re-sends wait; at most "
        "this long after a capture's last send",
        gt=0,
    )

    @model_validator(mode="after")
    def _retry_order(self) -> SpoolSettings:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("spool.retry_min_s must not exceed spool.retry_max_s")
        return self

    keep_history_days: float = Field(
        7.0, title="How long delivered captures are remembered (folder de-duplication)", gt=0
    )


class DisplaySettings(_Section):
    """Verdict display, hook command and the no-verdict timeout."""

    verdict_timeout_s: float = Field(
        30.0,
        title="Flag a capture without a verdict after this long and publish it again "
        "(the first re-send; later ones back off up to spool.resend_max_s)",
        gt=0,
    )
    hook: list[str] | None = Field(
        None, title="Command run per verdict/rejection with its JSON on stdin (argv list)"
    )
    hook_timeout_s: float = Field(10.0, title="Kill the hook after this long", gt=0)
    big: bool = Field(True, title="Show the verdict in large block letters")


class EdgeSettings(FileSettings):
    """Everything one station's agent reads."""

    model_config = SettingsConfigDict(
        env_prefix=EDGE_ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid", frozen=True
    )

    station: StationSettings
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    camera: CameraSettings = Field(default_factory=CameraSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    folder: FolderSettings = Field(default_factory=FolderSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    display: DisplaySettings = Field(default_factory=DisplaySettings)


def load_edge_settings(path: Path | None = None) -> EdgeSettings:
    """Edge settings from `path` (default config/edge.toml) plus the environment."""
    chosen = path if path is not None else DEFAULT_EDGE_CONFIG
    data: dict[str, Any] = read_toml(chosen)
    try:
        return EdgeSettings(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, str(chosen), EDGE_ENV_PREFIX)) from None
