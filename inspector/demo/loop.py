"""`inspector demo --loop`: the first batch reviewed, a site adapter trained, promoted, served.

The demo draws its parts, so it knows each one's defect the way a reviewer judging the
photo would: the loop records those judgements as reviews of the first batch's verdicts,
trains a site adapter on them (`inspector train`), compares it with the base on the
snapshot's holdout, promotes it through the registry's rule (`inspector adapters
promote`), announces it on the control topic, waits until the running worker serves it,
and sends a fresh batch whose verdicts name the adapter and version that judged them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from inspector.engine.identity import is_tiny_model
from inspector.errors import DemoFailed, RegistryRefused
from inspector.protocol import VerdictMessage, WorkerStatus
from inspector.safetext import terminal
from inspector.settings import Settings, TrainSettings
from inspector.store import ReviewInput, Store, latest_verdict, record_review
from inspector.store import latest_verdict_message as stored_verdict
from inspector.store.adapters import AdapterRecord

from .review import DEMO_REVIEWER
from .samples import PartKind
from .worker_process import WorkerProcess

ACTOR = "inspector-demo"
# Epochs at most: the loop trains on the CPU while the user watches.
DEMO_EPOCHS = 8
FORCED_REASON = (
    "demo loop: the tiny test model's random weights rarely clear the escape rule on a "
    "handful of reviews; promoted to show the hot swap"
)


@dataclass(frozen=True)
class Promoted:
    """The adapter the loop trained and put in service, with its holdout evaluation."""

    record: AdapterRecord
    evaluation: dict[str, Any]

    @property
    def ref(self) -> str:
        """name@version."""
        return self.record.ref


def demo_train_settings(settings: TrainSettings, batch: int) -> TrainSettings:
    """The user's training settings, with minimums the first batch meets and a CPU's epochs."""
    return settings.model_copy(
        update={
            "min_reviews": min(settings.min_reviews, batch),
            "min_per_class": min(settings.min_per_class, max(1, batch // 6)),
            "epochs": min(settings.epochs, DEMO_EPOCHS),
        }
    )


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
            confirmed = verdict is not None and verdict.verdict == label
            record_review(
                session,
                ReviewInput(
                    review_id=uuid.uuid4(),
                    request_id=uuid.UUID(request_id),
                    decision="confirm" if confirmed else "override",
                    final_verdict=label,
                    reviewer=DEMO_REVIEWER,
                    defect_type=None if kind == "ok" else kind,
                    comment=None if kind == "ok" else f"Defects: {kind}.",
                ),
            )
    return len(parts)


def train_and_promote(
    store: Store, settings: Settings, site: str, batch: int, console: Console
) -> Promoted:
    """`inspector train` on the reviews, then `inspector adapters promote` of the candidate."""
    from inspector.train.registry import promote
    from inspector.train.run import run_training

    train = demo_train_settings(settings.train, batch)
    console.print(
        f"training a site adapter for [bold]{site}[/] on the CPU "
        f"(LoRA rank {train.rank}, {train.epochs} epochs)"
    )
    trained = run_training(
        store, settings.model_copy(update={"train": train}), site, ACTOR, console=console
    )
    evaluation = trained.adapter.metrics["eval"]
    show_evaluation(evaluation, console)
    ref = trained.adapter.ref
    try:
        change = promote(store, ref, ACTOR)
        how = "it lets no more defects escape than the base"
    except RegistryRefused as exc:
        console.print(f"[yellow]the registry refused the promotion:[/] {terminal(exc.message)}")
        if not is_tiny_model(settings.model.path):
            raise DemoFailed(
                f"{ref} stays a candidate; review more parts and train again"
            ) from None
        # `inspector adapters promote --force --reason …`: the override is in the audit trail.
        change = promote(store, ref, ACTOR, force=True, reason=FORCED_REASON)
        how = f"forced, with the reason recorded in the audit trail: {FORCED_REASON}"
    active = change.active
    if active is None:  # a promotion always leaves its candidate active
        raise DemoFailed(f"{ref} was promoted, yet the site serves no adapter")
    console.print(f"[green]{terminal(active.ref)} promoted[/] ({how})")
    return Promoted(active, evaluation)


def _pct(value: object) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "—"


def show_evaluation(evaluation: Mapping[str, Any], console: Console) -> None:
    """Base vs candidate on the snapshot's holdout: the before/after figures."""
    base = evaluation["baseline"]["metrics"]
    cand = evaluation["candidate"]
    table = Table(
        title=f"holdout of {evaluation['holdout']} reviewed parts "
        f"(site threshold {evaluation['site_threshold']:.2f})"
    )
    for column in ("", "before (base)", "after (site adapter)"):
        table.add_column(column)
    for key, label in (
        ("accuracy", "accuracy"),
        ("escape_rate", "escapes (FAIL passed)"),
        ("false_reject_rate", "false rejects"),
        ("review_rate", "sent to REVIEW"),
    ):
        table.add_row(label, _pct(base.get(key)), _pct(cand.get(key)))
    console.print(table)


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
