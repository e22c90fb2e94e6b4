"""Synthetic inspections with verdicts and reviews in bulk, for the review benchmark.

Rows are inserted with Core executemany in chunks, so 100 000 inspections take seconds, not
the minutes the record_* functions (one request at a time, media hashed and synced) would;
the latest pointers and tallies the record_* functions keep are rebuilt once at the end.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from inspector.store.blobs import BlobStore
from inspector.store.models import Inspection, InspectionMedia, Media, Review, Verdict
from inspector.store.tallies import rebuild as rebuild_tallies


@dataclass(frozen=True, slots=True)
class SyntheticPlan:
    """What to generate: sites × lines × stations over `days` days, verdict mix, review share."""

    count: int = 100_000
    sites: tuple[str, ...] = ("osaka", "kobe", "nagoya")
    lines: int = 4
    stations: int = 3
    adapters_per_site: int = 2
    days: int = 60
    review_share: float = 0.2
    fail_share: float = 0.1
    reviewed_share: float = 0.3
    seed: int = 7
    end: datetime = datetime(2026, 11, 30, tzinfo=UTC)


def seed_synthetic(
    session: Session,
    blobs: BlobStore,
    plan: SyntheticPlan,
    photo: tuple[str, bytes],
    voice: tuple[str, bytes],
    chunk: int = 5000,
) -> int:
    """Insert `plan.count` inspections (sharing one photo and one voice note); return count."""
    rng = random.Random(plan.seed)
    now = datetime.now(UTC)
    media = []
    for (ctype, data), kind in ((photo, "image"), (voice, "audio")):
        sha, _ = blobs.put(data)
        media.append((kind, sha, ctype, len(data)))
    present = set(
        session.scalars(sa.select(Media.sha256).where(Media.sha256.in_([m[1] for m in media])))
    )
    new_media = [
        {
            "sha256": sha,
            "kind": kind,
            "content_type": ct,
            "size": size,
            "path": blobs.relative_path(sha),
            "created_at": now,
        }
        for kind, sha, ct, size in media
        if sha not in present
    ]
    if new_media:
        session.execute(sa.insert(Media), new_media)
    span = timedelta(days=plan.days).total_seconds()
    start = plan.end - timedelta(days=plan.days)
    done = 0
    while done < plan.count:
        size = min(chunk, plan.count - done)
        rows, facts = [], []
        for _ in range(size):
            site = rng.choice(plan.sites)
            at = start + timedelta(seconds=rng.random() * span)
            rows.append(
                {
                    "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "fingerprint": "0" * 64,
                    "site": site,
                    "line": f"line-{rng.randrange(plan.lines) + 1}",
                    "station": f"station-{rng.randrange(plan.stations) + 1}",
                    "part_id": f"P{rng.randrange(10**8):08d}",
                    "captured_at": at,
                    "received_at": at + timedelta(milliseconds=40),
                    "operator": "op-" + str(rng.randrange(20)),
                    "note": "burr felt on the left edge" if rng.random() < 0.2 else None,
                    "adapter_hint": None,
                }
            )
            facts.append((site, at))
        ids = session.scalars(
            sa.insert(Inspection).returning(Inspection.id, sort_by_parameter_order=True), rows
        ).all()
        verdicts, links, reviews = [], [], []
        for iid, (site, at) in zip(ids, facts, strict=True):
            verdicts.append(_verdict(rng, plan, iid, site, at))
            links += [
                {"inspection_id": iid, "position": 0, "role": "image", "sha256": media[0][1]},
                {"inspection_id": iid, "position": 1, "role": "audio", "sha256": media[1][1]},
            ]
        vids = session.scalars(
            sa.insert(Verdict).returning(Verdict.id, sort_by_parameter_order=True), verdicts
        ).all()
        for vid, v in zip(vids, verdicts, strict=True):
            if rng.random() < (plan.reviewed_share if v["verdict"] != "PASS" else 0.05):
                reviews.append(_review(rng, vid, v))
        session.execute(sa.insert(InspectionMedia), links)
        if reviews:
            session.execute(sa.insert(Review), reviews)
        done += size
    rebuild_tallies(session)
    return done


def _verdict(
    rng: random.Random, plan: SyntheticPlan, iid: int, site: str, at: datetime
) -> dict[str, Any]:
    roll = rng.random()
    if roll < plan.fail_share:
        verdict, p_pass = "FAIL", rng.uniform(0.0, 0.3)
    elif roll < plan.fail_share + plan.review_share:
        verdict, p_pass = "REVIEW", rng.uniform(0.3, 0.7)
    else:
        verdict, p_pass = "PASS", rng.uniform(0.7, 1.0)
    return {
        "inspection_id": iid,
        "verdict": verdict,
        "confidence": max(p_pass, 1 - p_pass),
        "p_pass": p_pass,
        "rationale": "The surface shows a fine line near the mounting hole.",
        "transcript": None,
        "defects": [{"type": "scratch"}] if verdict == "FAIL" else [],
        "model": "phi-4-multimodal-instruct",
        "adapter": f"{site}-v{rng.randrange(plan.adapters_per_site) + 1}",
        "adapter_fallback": False,
        "prompt_version": "v1",
        "worker_id": "gpu-1",
        "latency_ms": rng.uniform(80, 300),
        "decided_at": at + timedelta(milliseconds=200),
    }


def _review(rng: random.Random, vid: int, v: dict[str, Any]) -> dict[str, Any]:
    # Reviewers mostly agree with a decided verdict; REVIEW splits by P(PASS) with noise.
    truth_pass = rng.random() < (v["p_pass"] * 0.9 + 0.05)
    final = "PASS" if truth_pass else "FAIL"
    return {
        "review_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "inspection_id": v["inspection_id"],
        "verdict_id": vid,
        "decision": "confirm" if final == v["verdict"] else "override",
        "final_verdict": final,
        "defect_type": "scratch" if final == "FAIL" else None,
        "comment": None,
        "reviewer": "bench",
        "created_at": v["decided_at"] + timedelta(hours=1),
    }
