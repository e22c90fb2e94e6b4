"""Each check looks at one thing a host needs and says what to do when it is wrong.

A check returns a `Finding`; FAIL means the host cannot do its job until it is fixed, WARN
that it runs but something is off (or an optional service is down), SKIP that it could not
be judged from here or does not apply to the host's role. Which checks run, and which of
them must pass, depends on the role (`SPECS`). Checks never change anything: a missing
SQLite file stays missing, and no fix they suggest writes into a model, store or blob
directory.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from inspector.engine.identity import RANDOM_VERDICTS, hidden_size, is_tiny_model
from inspector.errors import (
    ConfigError,
    InspectorError,
    ModelLoadError,
    ModelNeedsImport,
    StoreUnavailable,
)
from inspector.settings import BrokerSettings, Settings

GiB = 1024**3


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Finding:
    """What one check found and, when it is not OK, what to do about it."""

    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorOptions:
    """Limits the checks judge by."""

    timeout_s: float = 5.0
    max_clock_skew_s: float = 2.0
    min_free_bytes: int = 2 * GiB
    clock_window: timedelta = timedelta(days=1)


Check = Callable[[Settings, DoctorOptions], Finding]


# --- broker --------------------------------------------------------------------------------


def _tls_context(broker: BrokerSettings) -> ssl.SSLContext:
    tls = broker.tls
    context = ssl.create_default_context(cafile=str(tls.ca_certs) if tls.ca_certs else None)
    if tls.certfile is not None and tls.keyfile is not None:
        context.load_cert_chain(str(tls.certfile), str(tls.keyfile))
    if tls.insecure:
        context.check_hostname = False
    return context


def _probe_tls(broker: BrokerSettings, sock: socket.socket) -> Finding | None:
    """A TLS handshake of our own, so a certificate problem is named, not just 'cannot connect'."""
    where = f"{broker.host}:{broker.port}"
    try:
        context = _tls_context(broker)
    except (OSError, ssl.SSLError) as exc:
        return Finding(
            "broker",
            Status.FAIL,
            f"cannot load the TLS files in broker.tls: {exc}",
            "point broker.tls.ca_certs (and certfile / keyfile for mutual TLS) at readable "
            "PEM files, e.g. those deploy/make-certs.sh wrote",
        )
    try:
        with context.wrap_socket(sock, server_hostname=broker.host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return Finding(
            "broker",
            Status.FAIL,
            f"the broker's certificate at {where} is not trusted: {exc.verify_message}",
            "broker.tls.ca_certs must be the CA that signed the broker's certificate "
            "(deploy/make-certs.sh: ca.crt), and that certificate must name "
            f"{broker.host} in its subjectAltName (make-certs.sh --broker {broker.host})",
        )
    except (ssl.SSLError, OSError) as exc:
        return Finding(
            "broker",
            Status.FAIL,
            f"no TLS handshake with {where}: {exc}",
            "use the broker's TLS listener (8883 in deploy/mosquitto/mosquitto.conf), or "
            "set broker.tls.enabled = false for a plain listener",
        )


def check_broker(settings: Settings, options: DoctorOptions) -> Finding:
    """TCP, then TLS when configured, then an MQTT login with the configured credentials."""
    from inspector.mqtt import ConnectionEvent, MqttTransport

    broker = settings.broker
    where = f"{broker.host}:{broker.port}"
    try:
        sock = socket.create_connection((broker.host, broker.port), timeout=options.timeout_s)
    except OSError as exc:
        return Finding(
            "broker",
            Status.FAIL,
            f"nothing answers on {where} ({exc.strerror or exc})",
            "start the broker (systemctl start mosquitto, or `mosquitto -d` for a local "
            "one), or set broker.host / broker.port (INSPECTOR_BROKER__HOST, "
            "INSPECTOR_BROKER__PORT) to where it listens",
        )
    with sock:
        if broker.tls.enabled and (refused := _probe_tls(broker, sock)) is not None:
            return refused
    events: queue.Queue[ConnectionEvent] = queue.Queue()
    # Session expiry 0 and a random id: the check leaves no session behind on the broker.
    probe = broker.model_copy(update={"session_expiry_s": 0})
    try:
        client = MqttTransport(probe, f"inspector-doctor-{uuid.uuid4().hex[:12]}", clean_start=True)
    except ConfigError as exc:
        return Finding("broker", Status.FAIL, exc.message, "fix the broker.tls file paths")
    client.on_connection(events.put)
    with client:
        try:
            event = events.get(timeout=options.timeout_s + broker.connect_timeout_s)
        except queue.Empty:
            return Finding(
                "broker",
                Status.FAIL,
                f"{where} accepts connections but gave no MQTT answer within "
                f"{options.timeout_s + broker.connect_timeout_s:g} s",
                "check that this port is the broker's MQTT listener, and whether it is a "
                "TLS one (broker.tls.enabled)",
            )
    who = f"as {broker.username}" if broker.username else "anonymously"
    if not event.connected:
        return Finding(
            "broker",
            Status.FAIL,
            f"{where} refused the login {who}: {event.reason}",
            "check broker.username and its password (INSPECTOR_BROKER__PASSWORD) against "
            "the broker's password file (mosquitto_passwd), and that the user has an "
            "ACL block (deploy/mosquitto/acl)",
        )
    over = "TLS" if broker.tls.enabled else "plain TCP (no TLS)"
    return Finding("broker", Status.OK, f"logged in to {where} {who} over {over}")


# --- store ---------------------------------------------------------------------------------


def check_schema(settings: Settings, options: DoctorOptions) -> Finding:
    """The database answers and carries every migration this version ships."""
    from inspector.store.database import safe_url
    from inspector.store.health import schema_status

    url = settings.store.url
    try:
        status = schema_status(url)
    except StoreUnavailable as exc:
        return Finding(
            "migrations",
            Status.FAIL,
            f"{exc.message} ({safe_url(url)})",
            "check store.url (INSPECTOR_STORE__URL) and that the database server runs",
        )
    if not status.known:
        return Finding(
            "migrations",
            Status.FAIL,
            f"the database is at revision {status.current}, which this version of Inspector "
            "does not know (a newer version migrated it)",
            "install the Inspector version that migrated this database on this host",
        )
    if status.pending:
        at = f"revision {status.current}" if status.current else "an empty schema"
        return Finding(
            "migrations",
            Status.FAIL,
            f"{len(status.pending)} migration(s) pending ({', '.join(status.pending)}); "
            f"the database is at {at}",
            "run `inspector db upgrade` (once per release, before starting the workers)",
        )
    return Finding("migrations", Status.OK, f"at the newest revision {status.head}")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_blob_disk(settings: Settings, options: DoctorOptions) -> Finding:
    """The media blob directory is writable and its disk has room."""
    blob_dir = settings.store.blob_dir
    existing = _nearest_existing(blob_dir)
    if not os.access(existing, os.W_OK):
        return Finding(
            "blob disk",
            Status.FAIL,
            f"{existing} is not writable by this user (store.blob_dir = {blob_dir})",
            "give the service's user write access, or set store.blob_dir to a directory it owns",
        )
    usage = shutil.disk_usage(existing)
    free = f"{usage.free / GiB:.1f} GiB free of {usage.total / GiB:.1f} GiB"
    where = f"{blob_dir}" + ("" if existing == blob_dir.absolute() else " (not created yet)")
    fix = (
        "free space, move store.blob_dir to a larger disk, or remove old media with "
        "`inspector retention --older-than 90d --apply`"
    )
    if usage.free < options.min_free_bytes:
        return Finding("blob disk", Status.FAIL, f"{free} at {where}", fix)
    if usage.free < usage.total * 0.1:
        return Finding("blob disk", Status.WARN, f"{free} at {where}: under 10 %", fix)
    return Finding("blob disk", Status.OK, f"{free} at {where}")


def check_clock(settings: Settings, options: DoctorOptions) -> Finding:
    """Station capture stamps against worker receipt stamps, per station, in the store."""
    from inspector.protocol import utcnow
    from inspector.store import Database
    from inspector.store.health import database_exists, station_clocks

    if not database_exists(settings.store.url):
        return Finding("clock skew", Status.SKIP, "no database yet, so no inspections to compare")
    db = Database(settings.store.url)
    try:
        clocks = station_clocks(db, utcnow() - options.clock_window)
    except StoreUnavailable as exc:  # e.g. no schema yet: the migrations check says what to do
        return Finding("clock skew", Status.SKIP, exc.message)
    finally:
        db.dispose()
    if not clocks:
        return Finding(
            "clock skew", Status.SKIP, "no inspections in the last day to compare clocks with"
        )
    off = [c for c in clocks if abs(c.offset_s) > options.max_clock_skew_s]
    if not off:
        worst = max(clocks, key=lambda c: abs(c.offset_s))
        return Finding(
            "clock skew",
            Status.OK,
            f"{len(clocks)} station(s) within {options.max_clock_skew_s:g} s of the workers "
            f"(largest {worst.offset_s:+.2f} s at {worst.site}/{worst.line}/{worst.station})",
        )
    described = "; ".join(
        f"{c.site}/{c.line}/{c.station} {abs(c.offset_s):.1f} s "
        f"{'ahead of' if c.offset_s < 0 else 'behind'} the workers ({c.samples} inspections)"
        for c in off
    )
    return Finding(
        "clock skew",
        Status.FAIL,
        described,
        "run NTP on stations and workers from one time source (chrony or "
        "systemd-timesyncd): capture times order the review queue and the training split",
    )


# --- model ---------------------------------------------------------------------------------


def check_model(settings: Settings, options: DoctorOptions) -> Finding:
    """model.path: its layout, files, manifest and token ids."""
    from inspector.engine.checkpoint import check_model_dir, check_token_ids
    from inspector.engine.layout import MANIFEST_FILE, import_command, verify_manifest

    path = settings.model.path
    # No fix suggested here writes into model.path: it may hold a real model.
    try:
        check_model_dir(path, need_speech=settings.model.transcribe)
    except ModelNeedsImport as exc:
        return Finding(
            "model",
            Status.FAIL,
            exc.message,
            f"`{import_command(path)}`, then set model.path to the new directory",
        )
    except ModelLoadError as exc:
        return Finding(
            "model",
            Status.FAIL,
            exc.message,
            "point model.path (INSPECTOR_MODEL__PATH) at a directory made by `inspector model "
            "import DOWNLOAD NEW_DIR` from a download of microsoft/Phi-4-multimodal-instruct",
        )
    problems = verify_manifest(path, hashes=False) if (path / MANIFEST_FILE).is_file() else []
    if problems:
        return Finding(
            "model",
            Status.FAIL,
            f"{path} differs from its manifest: {'; '.join(problems)}",
            f"`inspector model verify {path}` checks every sha256; import the download again "
            "into a new directory",
        )
    try:
        tokens = check_token_ids(path)
    except ModelLoadError as exc:
        return Finding("model", Status.FAIL, exc.message, "import the download again")
    hidden = hidden_size(path)
    if is_tiny_model(path):
        return Finding(
            "model",
            Status.WARN,
            f"{path} is the tiny test model (random weights): {RANDOM_VERDICTS}",
            "for real verdicts point model.path at Phi-4-multimodal-instruct",
        )
    manifest = "manifest sizes match" if (path / MANIFEST_FILE).is_file() else "no manifest"
    return Finding(
        "model", Status.OK, f"{path} is complete (hidden size {hidden}; {manifest}; {tokens})"
    )


def check_gpu(settings: Settings, options: DoctorOptions) -> Finding:
    """Whether torch sees a CUDA GPU, and what the configured model.device makes of that."""
    import torch

    if torch.cuda.is_available():
        names = [
            f"{torch.cuda.get_device_name(i)} "
            f"({torch.cuda.get_device_properties(i).total_memory / GiB:.0f} GiB)"
            for i in range(torch.cuda.device_count())
        ]
        return Finding("gpu", Status.OK, f"{len(names)} visible: {', '.join(names)}")
    why = (
        "this torch build has no CUDA (a CPU-only wheel)"
        if torch.version.cuda is None
        else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no device"
    )
    if settings.model.device == "cpu":
        return Finding("gpu", Status.OK, f"none, and model.device is 'cpu' ({why})")
    if settings.model.device == "cuda":
        return Finding(
            "gpu",
            Status.FAIL,
            f"model.device is 'cuda' but {why}",
            "check `nvidia-smi`, the driver, CUDA_VISIBLE_DEVICES and the torch build "
            "(pip install 'inspector[worker]' brings a CUDA one on Linux x86-64)",
        )
    tiny = is_tiny_model(settings.model.path)
    if tiny:
        return Finding(
            "gpu", Status.OK, f"none: {why}; the tiny test model runs on the CPU in seconds"
        )
    return Finding(
        "gpu",
        Status.WARN,
        f"none: {why}; the worker would run Phi-4-multimodal on the CPU in float32, "
        "minutes per inspection",
        "run workers on a host with an NVIDIA GPU (see `nvidia-smi`), or set "
        "model.device = 'cpu' to accept CPU speed",
    )


def check_review(settings: Settings, options: DoctorOptions) -> Finding:
    """The review app answers its health endpoint at review.host:review.port."""
    import urllib.error
    import urllib.request

    host = settings.review.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # listening everywhere: this host reaches it on the loopback
    url = f"http://{host}:{settings.review.port}/healthz"
    fix = (
        "start it: `inspector review serve` (systemd: `systemctl start inspector-review`), "
        "or set review.host / review.port; a host that does not serve it runs "
        "`inspector doctor --role worker` (or --role station)"
    )
    try:
        with urllib.request.urlopen(url, timeout=options.timeout_s) as resp:
            code = resp.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Finding("review", Status.FAIL, f"nothing answers on {url} ({reason})", fix)
    if code != 200:
        return Finding(
            "review",
            Status.FAIL,
            f"{url} answered HTTP {code}",
            "its log says why (journalctl -u inspector-review); often the database: see the "
            "migrations check",
        )
    return Finding("review", Status.OK, f"{url} answers")


class Role(StrEnum):
    """What a host runs; it decides which checks must pass there."""

    STATION = "station"
    WORKER = "worker"
    REVIEW = "review"
    ALL_IN_ONE = "all-in-one"


class Need(StrEnum):
    REQUIRED = "required"  # a failure fails the doctor
    OPTIONAL = "optional"  # a failure is a warning: the host's job goes on without it


_REQ, _OPT = Need.REQUIRED, Need.OPTIONAL


@dataclass(frozen=True)
class CheckSpec:
    """One check: its short id (for --skip), its name in the report, what it needs per role."""

    id: str
    name: str
    run: Check
    needs: dict[Role, Need]


_S, _W, _V, _A = Role.STATION, Role.WORKER, Role.REVIEW, Role.ALL_IN_ONE

# A station needs only the broker. The review app needs the store, and the broker only to
# announce a promoted adapter. The GPU check itself warns when a worker merely runs slowly.
# The review app is optional on an all-in-one host: the line runs without it.
SPECS: tuple[CheckSpec, ...] = (
    CheckSpec("broker", "broker", check_broker, {_S: _REQ, _W: _REQ, _V: _OPT, _A: _REQ}),
    CheckSpec("migrations", "migrations", check_schema, {_W: _REQ, _V: _REQ, _A: _REQ}),
    CheckSpec("model", "model", check_model, {_W: _REQ, _A: _REQ}),
    CheckSpec("gpu", "gpu", check_gpu, {_W: _REQ, _A: _REQ}),
    CheckSpec("disk", "blob disk", check_blob_disk, {_W: _REQ, _V: _REQ, _A: _REQ}),
    CheckSpec("clock", "clock skew", check_clock, {_W: _REQ, _V: _OPT, _A: _REQ}),
    CheckSpec("review", "review", check_review, {_V: _REQ, _A: _OPT}),
)
CHECKS: dict[str, Check] = {spec.id: spec.run for spec in SPECS}


def check_id(name: str) -> str | None:
    """The short id of a check given by its id or its report name ("clock skew" → "clock")."""
    for spec in SPECS:
        if name in (spec.id, spec.name):
            return spec.id
    return None


def _judged(finding: Finding, need: Need) -> Finding:
    """An optional check's failure is a warning: the host works without that service."""
    if need is Need.OPTIONAL and finding.status is Status.FAIL:
        return Finding(finding.check, Status.WARN, f"{finding.detail} (optional here)", finding.fix)
    return finding


def run_checks(
    load: Callable[[], Settings],
    options: DoctorOptions,
    skip: frozenset[str] = frozenset(),
    role: Role | None = None,
) -> list[Finding]:
    """The config first (nothing else can be judged without it), then the role's checks.

    `skip` holds check ids; `role` (default: the config's `role`) decides which checks run
    and whether a failure fails the host or only warns.
    """
    try:
        settings = load()
    except ConfigError as exc:
        return [
            Finding(
                "config",
                Status.FAIL,
                exc.message,
                "fix the named key in the file or unset the named environment variable",
            )
        ]
    role = role or Role(settings.role)
    findings = [Finding("config", Status.OK, f"settings are valid; this host is {role.value}")]
    for spec in SPECS:
        need = spec.needs.get(role)
        if need is None:
            findings.append(Finding(spec.name, Status.SKIP, f"not needed on a {role.value} host"))
            continue
        if spec.id in skip:
            findings.append(Finding(spec.name, Status.SKIP, "skipped (--skip)"))
            continue
        try:
            found = spec.run(settings, options)
        except InspectorError as exc:
            found = Finding(spec.name, Status.FAIL, exc.message)
        findings.append(_judged(found, need))
    return findings
