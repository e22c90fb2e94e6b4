"""Hundreds of hostile payloads, then normal requests: the poison is rejected, the rest judged."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from PIL import Image

from inspector.errors import Code
from inspector.protocol import ImagePart, StationKey, WorkerStatus, sha256_hex, status_topic
from inspector.store.models import Inspection, Rejection, Verdict
from inspector.worker import Worker
from tests.core.helpers import jpeg, make_request
from tests.fixtures.worker import Observer, make_settings

TIMEOUT = 60.0
# More than the worker's receive window (64), so poison alone could fill it many times over.
ROUNDS = 30


def _png_bomb() -> bytes:
    """A 1×1 PNG whose header claims 100000×100000 pixels."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    ihdr = struct.pack(">II", 100_000, 100_000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def _poison(site: str) -> Iterator[tuple[bytes, set[str]]]:
    """Distinct hostile payloads for station s1 of `site`, each with the codes it may earn."""
    bomb = _png_bomb()
    photo = [ImagePart.from_bytes("image/jpeg", jpeg(32, 32))]
    for n in range(ROUNDS):
        valid = json.loads(make_request(site=site, images=photo, audio=None).to_payload())
        deep = b"[" * (1_000 + n) + b"]" * (1_000 + n)
        yield deep, {Code.PAYLOAD_TOO_DEEP}
        note_deep = json.dumps(valid)[:-1].encode() + b', "note": ' + deep + b"}"
        yield note_deep, {Code.PAYLOAD_TOO_DEEP}
        yield b'{"request_id": "%d", "broken' % n, {Code.PAYLOAD_NOT_JSON}
        yield json.dumps([n, "not an object"]).encode(), {Code.PAYLOAD_INVALID}
        yield json.dumps({**valid, "site": n}).encode(), {Code.PAYLOAD_INVALID}
        yield json.dumps({**valid, "part_id": f"P\x00{n}"}).encode(), {Code.PAYLOAD_UNSAFE_TEXT}
        spoof = f"P-\u202eLIAF\u202c{n}"
        yield json.dumps({**valid, "part_id": spoof}).encode(), {Code.PAYLOAD_UNSAFE_TEXT}
        images = [{"content_type": "image/png", "data": base64.b64encode(bomb).decode()}]
        images[0]["sha256"] = sha256_hex(bomb)
        yield json.dumps({**valid, "images": images}).encode(), {Code.IMAGE_TOO_MANY_PIXELS}
        flood = {**valid, "note": [0] * 20_000, "n": n}
        yield json.dumps(flood).encode(), {Code.PAYLOAD_INVALID}
        yield b"\x00" * 64 + str(n).encode(), {Code.PAYLOAD_NOT_JSON}


def _count(worker: Worker, model: type[object]) -> int:
    with worker.store.db.read() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def test_hundreds_of_poison_payloads_are_rejected_and_the_requests_behind_them_judged(
    sqlite_url: str,
    tmp_path: Path,
    broker: tuple[str, int],
    unique: str,
    observer: Observer,
    start_worker: Callable[..., Worker],
) -> None:
    statuses: list[WorkerStatus] = []
    observer.transport.subscribe(
        status_topic(unique), lambda m: statuses.append(WorkerStatus.model_validate_json(m.payload))
    )
    worker = start_worker(make_settings(unique, sqlite_url, tmp_path, broker))
    station = StationKey(unique, "l1", "s1")
    poison = list(_poison(unique))
    for payload, _ in poison:
        observer.publish_raw(station, payload)
    photo = [ImagePart.from_bytes("image/jpeg", jpeg(32, 32))]
    normal = [make_request(site=unique, images=photo, audio=None) for _ in range(4)]
    for req in normal:
        observer.publish(req)

    verdicts = observer.collect_verdicts(len(normal), timeout=TIMEOUT)
    assert {v.request_id for v in verdicts} == {r.request_id for r in normal}
    rejected = [observer.rejections.get(timeout=TIMEOUT) for _ in poison]
    by_hash = {r.payload_sha256: r for r in rejected}
    for payload, codes in poison:
        got = by_hash[sha256_hex(payload)]
        assert got.code in codes, (got.code, got.message)
    with worker.store.db.read() as s:
        rows = s.execute(sa.select(Rejection.payload_sha256, Rejection.code)).all()
    stored = {sha: code for sha, code in rows}
    assert stored == {sha: r.code for sha, r in by_hash.items()}
    assert len(stored) == len(poison) == 10 * ROUNDS
    assert (_count(worker, Inspection), _count(worker, Verdict)) == (len(normal), len(normal))
    assert worker.metrics.settle_timeouts._value.get() == 0
    assert statuses and all(s.state == "online" for s in statuses)
