"""`inspector train`, and `inspector adapters` snapshot, list, show, eval, shadow, unshadow,
promote, rollback, retire and announce.

Each command parses, calls one function of `inspector.train`, and renders with rich; the
model and torch are imported only by the commands that run it.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from inspector.context import print_json, print_json_lines, settings_from
from inspector.errors import InspectorError
from inspector.quality.decision import Decision
from inspector.quality.rates import LABELS
from inspector.safetext import terminal
from inspector.settings import Settings

if TYPE_CHECKING:
    from inspector.quality import Evaluation
    from inspector.quality.shadow import ShadowComparison
    from inspector.store import Store
    from inspector.train.trainer import Step

console = Console()
err_console = Console(stderr=True)

adapters_app = typer.Typer(help="The site adapter registry.", no_args_is_help=True)

ByOpt = Annotated[str | None, typer.Option("--by", help="Who makes the change (default: $USER).")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why; kept in the audit trail.")]
RefArg = Annotated[str, typer.Argument(help="NAME@VERSION, or NAME for its newest version.")]
SiteOpt = Annotated[str, typer.Option(help="Site slug.")]


T = TypeVar("T")


def _settings(ctx: typer.Context) -> Settings:
    return settings_from(ctx)


def _who(by: str | None) -> str:
    if by and by.strip():
        return by.strip()[:64]
    try:
        return getpass.getuser()[:64]
    except (OSError, KeyError):
        return "unknown"


def _fail(exc: InspectorError) -> typer.Exit:
    err_console.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date (2026-11-23) or time (2026-11-23T08:00+09:00)",
            param_hint=name,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _open(settings: Settings) -> Any:
    from inspector.store import Store

    return Store.from_settings(settings.store)


def _registry(settings: Settings, change: Callable[[Store], T]) -> T:
    """`change` on the registry's store, closed after; a refusal exits with its code."""
    store = _open(settings)
    try:
        return change(store)
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()


def _ref(record: Any) -> str:
    return record.ref if record is not None else "the base model"


@contextmanager
def training_progress(out: Console) -> Iterator[Callable[[Step], None]]:
    """A progress bar the trainer's steps advance (the trainer itself draws nothing)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]training[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=out,
    ) as progress:
        task = progress.add_task("train", total=None, epoch=0, loss="-")

        def on_step(step: Step) -> None:
            progress.update(
                task,
                total=step.steps,
                completed=step.step,
                epoch=f"{step.epoch}/{step.epochs}",
                loss=f"{step.loss:.3f}",
            )

        yield on_step


# --- dataset snapshots ----------------------------------------------------------------------

SinceOpt = Annotated[str | None, typer.Option(help="Reviewed parts captured from (ISO).")]
UntilOpt = Annotated[str | None, typer.Option(help="Captured before (ISO).")]


def _snapshot(
    settings: Settings, site: str, since: str | None, until: str | None, by: str | None
) -> Any:
    from inspector.train.dataset import balance_report, build_snapshot

    store = _open(settings)
    try:
        snapshot = build_snapshot(
            store,
            site,
            settings.train,
            _who(by),
            since=_when(since, "--since"),
            until=_when(until, "--until"),
        )
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    table = Table("split", "PASS", "FAIL", "total", "FAIL share", title="class balance")
    for split, n_pass, n_fail, total, share in balance_report(snapshot):
        table.add_row(split, str(n_pass), str(n_fail), str(total), share)
    console.print(
        f"snapshot {snapshot.id} of site {terminal(site)}: {len(snapshot.items)} reviewed "
        f"inspection(s), content hash {snapshot.content_hash[:16]}…"
    )
    console.print(table)
    return snapshot


@adapters_app.command("snapshot")
def adapters_snapshot(
    ctx: typer.Context,
    site: SiteOpt,
    since: SinceOpt = None,
    until: UntilOpt = None,
    by: ByOpt = None,
) -> None:
    """Freeze the site's reviewed inspections into a dataset snapshot and show its balance."""
    _snapshot(_settings(ctx), site, since, until, by)


# --- adapters -----------------------------------------------------------------------------

_STATUS = {"active": "bold green", "shadow": "cyan", "candidate": "yellow", "retired": "dim"}


@adapters_app.command("list")
def adapters_list(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines, one adapter version a line.")
    ] = False,
) -> None:
    """Every adapter version, with its status and holdout escape rate."""
    from inspector.store.adapters import list_adapters

    store = _open(_settings(ctx))
    try:
        with store.db.read() as session:
            rows = list_adapters(session, site)
    finally:
        store.close()
    if as_json:
        print_json_lines(_summary(r) for r in rows)
        err_console.print(f"{len(rows)} adapter version(s)", highlight=False)
        return
    from inspector.quality import FIGURE, stored_evaluation

    listed = ("escapes_per_defective_part", "review_share", "verdict_accuracy")
    table = Table(
        "site", "adapter", "status", *(FIGURE[k].heading for k in listed), "created", "by"
    )
    for row in rows:
        evaluation = stored_evaluation(row.metrics)
        figures = evaluation.candidate.model_dump() if evaluation is not None else {}
        table.add_row(
            terminal(row.site),
            terminal(row.ref),
            f"[{_STATUS.get(row.status.value, '')}]{row.status.value}[/]",
            *(FIGURE[k].show(figures.get(k)) for k in listed),
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            terminal(row.created_by),
        )
    console.print(table)
    err_console.print(f"{len(rows)} adapter version(s)", highlight=False)


def _summary(row: Any) -> dict[str, Any]:
    return {
        "site": row.site,
        "adapter": row.ref,
        "name": row.name,
        "version": row.version,
        "status": row.status.value,
        "sha256": row.sha256,
        "path": row.path,
        "base_model": row.base_model,
        "snapshot_id": row.snapshot_id,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "metrics": row.metrics,
    }


@adapters_app.command("show")
def adapters_show(ctx: typer.Context, ref: RefArg) -> None:
    """One adapter version: file, hashes, metrics, model card and audit trail (JSON)."""
    from inspector.store.adapters import audit_trail, find_adapter

    store = _open(_settings(ctx))
    try:
        with store.db.read() as session:
            row = find_adapter(session, ref)
            trail = audit_trail(session, ref=row.ref)
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    body = _summary(row)
    body["card"] = row.card
    body["audit"] = [
        {
            "action": a.action,
            "from": a.from_status,
            "to": a.to_status,
            "by": a.actor,
            "reason": a.reason,
            "forced": a.forced,
            "at": a.at.isoformat(),
        }
        for a in trail
    ]
    print_json(body)  # straight to stdout: rich would wrap long strings at the terminal width


def eval_tables(evaluation: Evaluation) -> list[Table]:
    """The holdout figures, confusion matrices and escape-target thresholds, for people."""
    from inspector.quality import FIGURES, percent

    ours, theirs = evaluation.candidate, evaluation.baseline.metrics
    names = (terminal(evaluation.adapter), terminal(evaluation.baseline.adapter))
    figures = Table(
        "figure",
        *names,
        title=f"snapshot {evaluation.snapshot_id} holdout ({evaluation.holdout} parts), "
        f"site threshold {evaluation.site_threshold:.2f}",
    )
    for f in FIGURES:
        figures.add_row(f.heading, f.show(getattr(ours, f.key)), f.show(getattr(theirs, f.key)))
    figures.add_row(
        "calibration error", f"{ours.calibration_error:.3f}", f"{theirs.calibration_error:.3f}"
    )
    confusion = Table("holdout", "label", "→ PASS", "→ FAIL", "→ REVIEW", title="confusion")
    for name, m in zip(names, (ours, theirs), strict=True):
        for truth in LABELS:
            confusion.add_row(name, truth, *(str(m.confusion.count(truth, d)) for d in Decision))
    target = Table(
        "figure",
        *names,
        title=f"lowest threshold with escapes / defective part ≤ "
        f"{percent(evaluation.escape_target)}",
    )
    points = (evaluation.candidate_for_target, evaluation.baseline.for_target)
    target.add_row("threshold", *(f"{t.threshold:.3f}" for t in points))
    for f in FIGURES[:4]:
        target.add_row(f.heading, *(f.show(getattr(t, f.key)) for t in points))
    return [figures, confusion, target]


def shadow_table(comparison: ShadowComparison) -> Table:
    """Champion vs challenger on the reviewed live inspections both judged, for people."""
    from inspector.quality import percent, shown

    table = Table(
        title=f"In the shadow: {comparison.reviewed} reviewed live inspection(s), "
        f"{comparison.disagreeing} decided differently (agreement "
        f"{percent(comparison.agreement)})"
    )
    table.add_column("figure")
    table.add_column(f"champion {terminal(comparison.champion)}", justify="right")
    table.add_column(f"challenger {terminal(comparison.challenger)}", justify="right")
    ours, theirs = comparison.champion_rates, comparison.challenger_rates
    for key in (
        "escapes_per_defective_part",
        "escapes_per_shipped_part_ppm",
        "false_rejects_per_good_part",
        "review_share",
        "verdict_accuracy",
    ):
        table.add_row(key, shown(key, getattr(ours, key)), shown(key, getattr(theirs, key)))
    return table


def meanings() -> str:
    """What each figure counts, per what: printed under the tables."""
    from inspector.quality import FIGURES

    return "; ".join(f"{f.heading}: {f.meaning}" for f in FIGURES)


@adapters_app.command("eval")
def adapters_eval(
    ctx: typer.Context,
    ref: RefArg,
    version: Annotated[
        int | None, typer.Option("--version", help="Adapter version (instead of NAME@VERSION).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
    by: ByOpt = None,
) -> None:
    """Score an adapter and what its site serves now on the adapter's holdout; store the result."""
    from inspector.train.evaluate import evaluate_adapter

    if version is not None:
        if "@" in ref:
            raise typer.BadParameter("give the version once: NAME@VERSION or --version")
        ref = f"{ref}@{version}"
    from inspector.store.shadow import shadow_comparison

    settings = _settings(ctx)
    store = _open(settings)
    try:
        done = evaluate_adapter(store, settings, ref, _who(by))
        with store.db.read() as session:
            shadowed = shadow_comparison(session, done.adapter)
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    if as_json:
        body = done.evaluation.model_dump(mode="json")
        if shadowed is not None:
            body["shadow"] = shadowed.model_dump(mode="json")
        print_json(body)
        return
    for table in eval_tables(done.evaluation):
        console.print(table)
    if shadowed is not None:
        console.print(shadow_table(shadowed))
    err_console.print(meanings(), markup=False, highlight=False)
    console.print(
        f"stored with {terminal(done.adapter.ref)}, compared with {terminal(_ref(done.baseline))}"
    )


def _announce(settings: Settings, change: Any) -> None:
    from inspector.control import announce

    active = change.active.adapter if change.active is not None else None
    shadowing = change.shadow_assignment
    try:
        announce(settings.broker, change.site, active, shadowing)
    except InspectorError as exc:
        err_console.print(f"warning: {exc.message}", markup=False, soft_wrap=True)
        raise typer.Exit(code=3) from None
    shadow_note = (
        f" (shadow: {terminal(shadowing.adapter.tag)} on {shadowing.share:.0%} of requests)"
        if shadowing is not None
        else ""
    )
    console.print(
        f"announced to the workers of site {terminal(change.site)}: "
        f"{terminal(_ref(change.active))}{shadow_note}"
    )


@adapters_app.command("shadow")
def adapters_shadow(
    ctx: typer.Context,
    ref: RefArg,
    share: Annotated[
        float,
        typer.Option("--share", help="Share of the site's live requests judged again (0-1]."),
    ] = 0.2,
    reason: ReasonOpt = None,
    by: ByOpt = None,
) -> None:
    """Let a candidate judge a share of its site's live requests again, unpublished."""
    from inspector.train.registry import shadow

    settings = _settings(ctx)
    change = _registry(settings, lambda store: shadow(store, ref, share, _who(by), reason))
    console.print(f"[cyan]{terminal(_ref(change.shadow))} judges {share:.0%} in the shadow[/]")
    _announce(settings, change)


@adapters_app.command("unshadow")
def adapters_unshadow(
    ctx: typer.Context, ref: RefArg, reason: ReasonOpt = None, by: ByOpt = None
) -> None:
    """Stop a shadow adapter; it stays a candidate, its shadow verdicts are kept."""
    from inspector.train.registry import unshadow

    settings = _settings(ctx)
    change = _registry(settings, lambda store: unshadow(store, ref, _who(by), reason))
    console.print(f"{terminal(ref)} no longer judges in the shadow")
    _announce(settings, change)


@adapters_app.command("promote")
def adapters_promote(
    ctx: typer.Context,
    ref: RefArg,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even with a worse escape rate.")
    ] = False,
    reason: ReasonOpt = None,
    by: ByOpt = None,
) -> None:
    """Make a candidate the site's active adapter (refused if it lets more defects escape)."""
    from inspector.train.registry import promote

    settings = _settings(ctx)
    change = _registry(
        settings,
        lambda store: promote(
            store,
            ref,
            _who(by),
            force=force,
            reason=reason,
            min_shadow_reviews=lambda site: settings.site(site).min_shadow_reviews,
        ),
    )
    was = change.replaced.ref if change.replaced is not None else "the base model"
    console.print(f"[green]{terminal(_ref(change.active))} is active[/] (replaces {terminal(was)})")
    _announce(settings, change)


@adapters_app.command("rollback")
def adapters_rollback(
    ctx: typer.Context, site: SiteOpt, reason: ReasonOpt = None, by: ByOpt = None
) -> None:
    """Retire the site's active adapter and restore the one it replaced."""
    from inspector.train.registry import rollback

    settings = _settings(ctx)
    change = _registry(settings, lambda store: rollback(store, site, _who(by), reason))
    console.print(
        f"[green]{terminal(_ref(change.replaced))} retired; "
        f"{terminal(_ref(change.active))} serves[/]"
    )
    _announce(settings, change)


@adapters_app.command("retire")
def adapters_retire(
    ctx: typer.Context, ref: RefArg, reason: ReasonOpt = None, by: ByOpt = None
) -> None:
    """Retire a candidate that will not be promoted."""
    from inspector.store.adapters import AdapterStatus, find_adapter
    from inspector.train.registry import retire, serving

    def retired(store: Store) -> tuple[Any, Any]:
        with store.db.read() as session:
            was_shadow = find_adapter(session, ref).status is AdapterStatus.SHADOW
        row = retire(store, ref, _who(by), reason)
        return row, serving(store, row.site) if was_shadow else None

    settings = _settings(ctx)
    row, change = _registry(settings, retired)
    console.print(f"{terminal(row.ref)} retired")
    if change is not None:  # it judged in the shadow: the site's workers stop that
        _announce(settings, change)


@adapters_app.command("announce")
def adapters_announce(ctx: typer.Context, site: SiteOpt) -> None:
    """Publish the site's active (and shadow) adapter from the registry again."""
    from inspector.train.registry import serving

    settings = _settings(ctx)
    store = _open(settings)
    try:
        change = serving(store, site)
    finally:
        store.close()
    _announce(settings, change)


def train(
    ctx: typer.Context,
    site: SiteOpt,
    since: SinceOpt = None,
    until: UntilOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Adapter directory (default: under model.adapters_dir).")
    ] = None,
    by: ByOpt = None,
) -> None:
    """Train a site adapter from the site's reviews and register it as a candidate."""
    from inspector.train.dataset import balance_report
    from inspector.train.run import run_training

    settings = _settings(ctx)
    store = _open(settings)
    try:
        with training_progress(err_console) as on_step:
            done = run_training(
                store,
                settings,
                site,
                _who(by),
                since=_when(since, "--since"),
                until=_when(until, "--until"),
                out=out,
                on_step=on_step,
            )
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    table = Table("split", "PASS", "FAIL", "total", "FAIL share", title="class balance")
    for split, n_pass, n_fail, total, share in balance_report(done.snapshot):
        table.add_row(split, str(n_pass), str(n_fail), str(total), share)
    console.print(table)
    from inspector.quality import stored_evaluation

    evaluation = stored_evaluation(done.adapter.metrics)
    if evaluation is not None:
        for table in eval_tables(evaluation):
            console.print(table)
    losses = done.result.epoch_losses
    console.print(
        f"candidate {terminal(done.adapter.ref)} (sha256 {done.adapter.sha256[:16]}…), "
        f"loss {losses[0]:.3f} → {losses[-1]:.3f} in {done.result.seconds:.0f} s"
    )
