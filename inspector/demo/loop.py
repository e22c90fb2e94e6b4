"""`inspector demo --loop`: the first batch reviewed, a site adapter trained, promoted, served.

The demo draws its parts, so it knows each one's defect the way a reviewer judging the
photo would: the loop records those judgements as explicit reviews of the first batch's
verdicts (PASS, or FAIL with the drawn defect), trains a site adapter on exactly those
(`inspector train --since` the batch), compares it with the base on the snapshot's
holdout, promotes it through the registry's rule (`inspector adapters promote`, never
forced: a refusal stops the demo and says why), announces it on the control topic, waits
until the running worker serves it, and sends a fresh batch whose verdicts name the
adapter that judged them and are checked against the drawn defects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from rich.console import Console
from rich.table import Table

from inspector.engine.identity import is_tiny_model
from inspector.errors import DemoFailed, RegistryRefused
from inspector.protocol import VerdictMessage, WorkerStatus
from inspector.quality import FIGURES, Evaluation, percent, stored_evaluation
from inspector.safetext import terminal
from inspector.settings import Settings, TrainSettings
from inspector.store import ReviewInput, Store, latest_verdict, record_review
from inspector.store import latest_verdict_message as stored_verdict
from inspector.store.adapters import AdapterRecord

from .review import DEMO_REVIEWER
from .samples import PartKind
from .worker_process import WorkerProcess

ACTOR = "inspector-demo"
# On the tiny model the loop trains on the CPU while the user watches: twenty passes at a
# learning rate (falling to zero) that separates the drawn defects within them, without
# gradient checkpointing (the tiny model needs no memory saved). Over five sets of drawn
# parts, ten passes let a defective holdout part through in two (the gate then refuses
# rightly); twenty in none. Real weights train with the user's settings, at most
# DEMO_EPOCHS passes.
DEMO_EPOCHS = 20
TINY_LEARNING_RATE = 3e-3
# The fewest fresh-batch verdicts that must match the drawn defects for the demo to pass.
FRESH_AGREEMENT = 0.8


@dataclass(frozen=True)
class Promoted:
    """The adapter the loop trained and put in service, with its holdout evaluation."""

    record: AdapterRecord
    evaluation: Evaluation

    @property
    def ref(self) -> str:
        """name@version."""
        return self.record.ref


def demo_train_settings(settings: TrainSettings, batch: int, tiny: bool) -> TrainSettings:
    """The user's training settings, with minimums the first batch meets and a CPU's epochs."""
    update: dict[str, object] = {
        "min_reviews": min(settings.min_reviews, batch),
        "min_per_class": min(settings.min_per_class, max(1, batch // 6)),
        "epochs": min(settings.epochs, DEMO_EPOCHS),
    }
    if tiny:
        update.update(
            epochs=DEMO_EPOCHS, learning_rate=TINY_LEARNING_RATE, gradient_checkpointing=False
        )
    return settings.model_copy(update=update)


def label_of(kind: PartKind) -> Literal["PASS", "FAIL"]:
    """What a reviewer decides for a drawn part: any drawn defect fails it."""
    return "PASS" if kind == "ok" else "FAIL"


def record_reviews(store: Store, parts: Mapping[str, tuple[str, PartKind]]) -> int:
    """Review each part's verdict as the demo reviewer (part id → (request id, kind))."""
    with store.db.write() as session:
        for request_id, kind in parts.values():
            # record_review refuses (NotFound) a request the store does not hold.
            verdict = latest_verdict(session, request_id)
            label = label_of(kind)
            # An explicit answer: "confirm" only where the model said PASS or FAIL itself.
            model = verdict.verdict if verdict is not None else None
            decision: Literal["confirm", "override", "answer"] = (
                "answer" if model not in ("PASS", "FAIL") else
                "confirm" if model == label else "override"
            )  # fmt: skip
            # Recorded as the demo reviewer, it counts as that user's own in the review app.
            record_review(
                session,
                ReviewInput(
                    review_id=uuid.uuid4(),
                    request_id=uuid.UUID(request_id),
                    decision=decision,
                    final_verdict=label,
                    reviewer=DEMO_REVIEWER,
                    defect_type=None if kind == "ok" else kind,
                    comment=None if kind == "ok" else f"Defects: {kind}.",
                    via="demo",
                ),
            )
    return len(parts)


def train_and_promote(
    store: Store,
    settings: Settings,
    site: str,
    reviewed: int,
    since: datetime,
    console: Console,
) -> Promoted:
    """`inspector train --since` the reviewed batch, then `inspector adapters promote`."""
    from inspector.train.cli import training_progress
    from inspector.train.registry import promote
    from inspector.train.run import run_training

    train = demo_train_settings(settings.train, reviewed, is_tiny_model(settings.model.path))
    console.print(
        f"training a site adapter for [bold]{site}[/] on the CPU "
        f"(LoRA rank {train.rank}, {train.epochs} epochs, learning rate {train.learning_rate:g})"
    )
    with training_progress(console) as on_step:
        trained = run_training(
            store,
            settings.model_copy(update={"train": train}),
            site,
            ACTOR,
            since=since,
            on_step=on_step,
        )
    used = trained.snapshot.counts["total"]
    before = used - reviewed
    console.print(
        f"trained on the {used} review(s) recorded now"
        if before == 0
        else f"trained on {used} review(s): the {reviewed} recorded now and {before} from before"
    )
    evaluation = stored_evaluation(trained.adapter.metrics)
    if evaluation is None:  # run_training always stores one
        raise DemoFailed(f"{trained.adapter.ref} was trained without an evaluation")
    show_evaluation(evaluation, console)
    ref = trained.adapter.ref
    try:
        change = promote(store, ref, ACTOR)
    except RegistryRefused as exc:
        raise DemoFailed(
            f"the registry refused to promote {ref}: {exc.message}. It stays a candidate; "
            "the demo stops here (review more parts and train again)"
        ) from None
    active = change.active
    if active is None:  # a promotion always leaves its candidate active
        raise DemoFailed(f"{ref} was promoted, yet the site serves no adapter")
    console.print(
        f"[green]{terminal(active.ref)} promoted[/] by the registry's rule: it lets no larger "
        "share of the defective parts pass than the base"
    )
    return Promoted(active, evaluation)


def show_evaluation(evaluation: Evaluation, console: Console) -> None:
    """Base vs candidate on the snapshot's holdout: the before/after figures, explained."""
    base, cand = evaluation.baseline.metrics, evaluation.candidate
    table = Table(
        title=f"holdout of {evaluation.holdout} reviewed parts "
        f"(site threshold {evaluation.site_threshold:.2f})"
    )
    for column in ("", "before (base)", "after (site adapter)", "what it counts"):
        table.add_column(column)
    for f in FIGURES:
        table.add_row(
            f.heading, f.show(getattr(base, f.key)), f.show(getattr(cand, f.key)), f.meaning
        )
    console.print(table)


def agreement(verdicts: list[VerdictMessage], parts: Mapping[str, tuple[str, PartKind]]) -> float:
    """The share of verdicts equal to what the drawn defect makes the part (REVIEW: not)."""
    right = sum(1 for msg in verdicts if msg.verdict.value == label_of(parts[msg.part_id][1]))
    return right / len(verdicts) if verdicts else 0.0


def wait_serving(worker: WorkerProcess, site: str, promoted: Promoted, timeout_s: float) -> None:
    """Block until the worker's status says it serves the promoted adapter for `site`."""

    def serving(status: WorkerStatus) -> bool:
        return any(
            s.site == site
            and s.state == "serving"
            and s.name == promoted.record.name
            and s.version == promoted.record.version
            for s in status.site_adapters
        )

    worker.wait_status(serving, f"serve {promoted.ref}", timeout_s)


def fresh_verdicts(store: Store, parts: Mapping[str, tuple[str, PartKind]]) -> list[VerdictMessage]:
    """The stored verdicts of the fresh batch, in part order."""
    with store.db.read() as session:
        return [stored_verdict(session, rid) for rid, _ in parts.values()]


def show_fresh(
    verdicts: list[VerdictMessage], parts: Mapping[str, tuple[str, PartKind]], console: Console
) -> None:
    """The fresh batch's verdicts next to the drawn defect, with the adapter that judged each."""
    table = Table(title="fresh batch, judged with the site adapter")
    for column in ("part", "drawn", "verdict", "P(PASS)", "adapter"):
        table.add_column(column)
    for msg in verdicts:
        _, kind = parts[msg.part_id]
        version = f"@{msg.adapter_version}" if msg.adapter_version is not None else ""
        table.add_row(
            terminal(msg.part_id),
            kind,
            msg.verdict.value,
            f"{msg.p_pass:.2f}",
            terminal(f"{msg.adapter}{version}"),
        )
    console.print(table)
    share = agreement(verdicts, parts)
    console.print(
        f"fresh batch: {percent(share)} of the verdicts agree with the drawn defects "
        "(PASS for a clean part, FAIL for a scratch or a dent; a REVIEW does not agree)"
    )
    if share < FRESH_AGREEMENT:
        raise DemoFailed(
            f"only {percent(share)} of the fresh batch's verdicts agree with the drawn "
            f"defects (the demo expects at least {percent(FRESH_AGREEMENT)})"
        )
