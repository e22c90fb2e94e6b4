"""`inspector bench review`: server time of the review app's pages at 100 000 inspections.

Seeds a fresh SQLite file (or an empty PostgreSQL database) with synthetic inspections,
verdicts and reviews, then asks the app in-process for queue pages (every tab, first and
deeper keyset pages), detail pages, the numbers page and a 10 000-row CSV export. Times
are the app's own (its Server-Timing header) for pages; the export is timed to the last byte.
"""

from __future__ import annotations

import gc
import io
import os
import random
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from inspector.media import encode_jpeg
from inspector.settings import Settings

PASSWORD = "bench password 1"


@dataclass(frozen=True)
class ReviewBenchConfig:
    """What to seed and how often to ask."""

    count: int = 100_000
    store_url: str | None = None
    queue_requests: int = 60
    detail_requests: int = 60
    stats_requests: int = 12
    export_requests: int = 3
    export_rows: int = 10_000
    filter_repeats: int = 5  # requests per tab × filter (and detail pages of its items)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(p95, 2),
        "max_ms": round(ordered[-1], 2),
    }


def _server_ms(response: Any) -> float:
    found = re.search(r"dur=([0-9.]+)", response.headers["server-timing"])
    assert found is not None
    return float(found.group(1))


def _media() -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    photo = encode_jpeg(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    tone = (0.2 * np.sin(np.arange(16000 * 3) / 16000 * 2 * np.pi * 440)).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, tone, 16000, format="WAV")
    return ("image/jpeg", photo), ("audio/wav", out.getvalue())


def run_review_bench(cfg: ReviewBenchConfig) -> dict[str, Any]:
    """Seed, then measure; return the report."""
    from fastapi.testclient import TestClient

    from inspector.review import create_app
    from inspector.review.passwords import hash_password
    from inspector.store import Store
    from inspector.store import users as user_store
    from inspector.store.synthetic import SyntheticPlan, seed_synthetic

    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        url = cfg.store_url or f"sqlite:///{Path(tmp) / 'review.db'}"
        store = Store(url, Path(tmp) / "blobs")
        store.upgrade()
        photo, voice = _media()
        started = time.perf_counter()
        with store.db.write() as session:
            seed_synthetic(session, store.blobs, SyntheticPlan(count=cfg.count), photo, voice)
            user_store.add_user(session, "bench", hash_password(PASSWORD), "reviewer")
        seed_s = time.perf_counter() - started
        store.db.analyze()
        try:
            app = create_app(Settings(), store)
            # As `inspector review serve` starts: what is loaded by now is frozen out of the
            # garbage collector's full passes.
            gc.collect()
            gc.freeze()
            with TestClient(app, base_url="http://localhost") as client:
                _login(client)
                report = _measure(client, cfg)
        finally:
            store.close()
    backend = url.split(":", 1)[0].split("+", 1)[0]
    report.update({"database": backend, "inspections": cfg.count, "seed_s": round(seed_s, 1)})
    # Server times on a shared machine move with its load: the 1, 5 and 15 minute averages.
    report["load_average"] = [round(n, 2) for n in os.getloadavg()]
    report["targets"] = {"queue_p95_ms": 150, "detail_p95_ms": 150, "stats_p95_ms": 500}
    return report


def _login(client: Any) -> None:
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    form = {"username": "bench", "password": PASSWORD, "login_csrf": token.group(1)}
    r = client.post("/login", data=form, follow_redirects=False)
    if r.status_code != 303:
        raise RuntimeError(f"bench login failed: {r.status_code}")


def _get(client: Any, path: str, params: dict[str, Any] | None = None) -> Any:
    r = client.get(path, params=params)
    if r.status_code != 200:
        raise RuntimeError(f"GET {path} {params} answered {r.status_code}: {r.text[:200]}")
    return r


# Every filter the queue page offers, alone and in the combinations that narrow by the
# verdict's own columns (the slow kind: they are not on the inspection row).
QUEUE_FILTERS: dict[str, dict[str, str]] = {
    "none": {},
    "site": {"site": "kobe"},
    "site+line+station": {"site": "kobe", "line": "line-2", "station": "station-1"},
    "line": {"line": "line-3"},
    "station": {"station": "station-2"},
    "days": {"since": "2026-11-01", "until": "2026-11-07"},
    "site+days": {"site": "osaka", "since": "2026-11-01", "until": "2026-11-07"},
    "verdict": {"verdict": "FAIL"},
    "reviewed any": {"reviewed": "any"},
    "reviewed yes": {"reviewed": "yes"},
    "adapter": {"adapter": "kobe-v1"},
    "min_confidence": {"min_confidence": "0.9"},
    "confidence range": {"min_confidence": "0.6", "max_confidence": "0.7"},
    "adapter+min_confidence": {"adapter": "osaka-v2", "min_confidence": "0.8"},
    "part_id prefix": {"part_id": "P12"},
    "site+part_id": {"site": "nagoya", "part_id": "P3"},
    "everything": {
        "site": "kobe",
        "line": "line-1",
        "adapter": "kobe-v2",
        "min_confidence": "0.5",
        "max_confidence": "0.95",
        "since": "2026-10-01",
        "until": "2026-11-30",
        "part_id": "P",
        "reviewed": "any",
    },
}
STATS_FILTERS: dict[str, dict[str, str]] = {
    "none": {},
    "site": {"site": "kobe"},
    "adapter": {"adapter": "kobe-v1"},
    "days": {"since": "2026-11-01", "until": "2026-11-07"},
    "site+adapter+days": {
        "site": "osaka",
        "adapter": "osaka-v1",
        "since": "2026-10-15",
        "until": "2026-11-15",
    },
    "threshold": {"threshold": "0.8"},
}
TABS = ("review", "fail", "audit", "all")


def _per_filter(client: Any, repeats: int) -> dict[str, dict[str, Any]]:
    """p50/p95 of the first queue page and a detail page per tab × filter, and of numbers."""
    out: dict[str, dict[str, Any]] = {}
    for name, params in QUEUE_FILTERS.items():
        for tab in TABS:
            query = {"tab": tab, **params}
            queue: list[float] = []
            detail: list[float] = []
            rids: list[str] = []
            for _ in range(repeats):
                r = _get(client, "/queue", query)
                queue.append(_server_ms(r))
                rids = rids or re.findall(r'data-rid="([0-9a-f-]{36})"', r.text)[:repeats]
            for rid in rids:
                detail.append(_server_ms(_get(client, f"/inspections/{rid}", query)))
            out[f"queue {tab} · {name}"] = {**_percentiles(queue), "target_ms": 150}
            if detail:
                out[f"detail {tab} · {name}"] = {**_percentiles(detail), "target_ms": 150}
    for name, params in STATS_FILTERS.items():
        stats = [_server_ms(_get(client, "/stats", params)) for _ in range(repeats)]
        out[f"numbers · {name}"] = {**_percentiles(stats), "target_ms": 500}
    return out


def slowest(filters: dict[str, dict[str, Any]], n: int = 5) -> list[tuple[str, dict[str, Any]]]:
    """The `n` filters with the highest p95 relative to their target, slowest first."""
    ranked = sorted(filters.items(), key=lambda kv: kv[1]["p95_ms"] / kv[1]["target_ms"])
    return ranked[::-1][:n]


def _measure(client: Any, cfg: ReviewBenchConfig) -> dict[str, Any]:
    rng = random.Random(1)
    tabs = ["review", "fail", "audit", "all"]
    for tab in tabs:  # warm caches and the connection pool
        _get(client, "/queue", {"tab": tab})
    queue: list[float] = []
    rids: list[str] = []
    for n in range(cfg.queue_requests):
        tab = tabs[n % len(tabs)]
        params: dict[str, Any] = {"tab": tab}
        if n % 3 == 1:
            params["site"] = "kobe"
        first = _get(client, "/queue", params)
        queue.append(_server_ms(first))
        rids += re.findall(r'data-rid="([0-9a-f-]{36})"', first.text)[:3]
        older = re.search(r'href="/queue\?([^"]*cursor=[^"]+)" id="older"', first.text)
        if older and n % 2 == 0:
            deeper = client.get("/queue?" + older.group(1).replace("&amp;", "&"))
            queue.append(_server_ms(deeper))
    detail: list[float] = []
    rng.shuffle(rids)
    for rid in (rids * 3)[: cfg.detail_requests]:
        detail.append(_server_ms(_get(client, f"/inspections/{rid}", {"tab": "review"})))
    _get(client, "/stats")
    stats: list[float] = []
    for n in range(cfg.stats_requests):
        params = {"site": "osaka"} if n % 2 else {}
        stats.append(_server_ms(_get(client, "/stats", params)))
    export: list[float] = []
    rows = 0
    for _ in range(cfg.export_requests):
        started = time.perf_counter()
        r = _get(
            client,
            "/api/v1/export",
            {"format": "csv", "tab": "all", "reviewed": "any", "limit": cfg.export_rows},
        )
        export.append((time.perf_counter() - started) * 1000)
        rows = r.text.count("\n") - 1
    filters = _per_filter(client, cfg.filter_repeats)
    return {
        "queue": _percentiles(queue),
        "detail": _percentiles(detail),
        "stats": _percentiles(stats),
        "export": {**_percentiles(export), "rows": rows},
        "filters": filters,
        "slowest": [name for name, _ in slowest(filters)],
        "over_target": [n for n, f in filters.items() if f["p95_ms"] > f["target_ms"]],
    }
