"""`inspector train`, `inspector adapters snapshot|list|show|eval|promote|rollback|retire|announce`.

Each command parses, calls one function of `inspector.train`, and renders with rich; the
model and torch are imported only by the commands that run it.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from inspector.context import settings_from
from inspector.errors import InspectorError
from inspector.safetext import json_line, terminal
from inspector.settings import Settings

console = Console()
err_console = Console(stderr=True)

adapters_app = typer.Typer(help="The site adapter registry.", no_args_is_help=True)

ByOpt = Annotated[str | None, typer.Option("--by", help="Who makes the change (default: $USER).")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why; kept in the audit trail.")]
RefArg = Annotated[str, typer.Argument(help="NAME@VERSION, or NAME for its newest version.")]
SiteOpt = Annotated[str, typer.Option(help="Site slug.")]


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


def _ref(record: Any) -> str:
    return record.ref if record is not None else "the base model"


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "-"


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

_STATUS = {"active": "bold green", "candidate": "yellow", "retired": "dim"}


@adapters_app.command("list")
def adapters_list(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
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
        print(json.dumps([_summary(r) for r in rows], indent=2))
        return
    table = Table("site", "adapter", "status", "accuracy", "escape", "REVIEW", "created", "by")
    for row in rows:
        ev = row.metrics.get("eval", {}).get("candidate", {})
        table.add_row(
            terminal(row.site),
            terminal(row.ref),
            f"[{_STATUS.get(row.status.value, '')}]{row.status.value}[/]",
            _pct(ev.get("accuracy")),
            _pct(ev.get("escape_rate")),
            _pct(ev.get("review_rate")),
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            terminal(row.created_by),
        )
    console.print(table)
    console.print(f"{len(rows)} adapter version(s)")


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
    console.print(json_line(body, indent=2), markup=False, highlight=False)


def _metric_rows(evaluation: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, metrics at the site threshold, the escape-target threshold) per adapter."""
    base = evaluation["baseline"]
    return [
        (evaluation["adapter"], evaluation["candidate"], evaluation["candidate_for_target"]),
        (base["adapter"], base["metrics"], base["for_target"]),
    ]


def _eval_tables(evaluation: dict[str, Any]) -> list[Table]:
    rows = _metric_rows(evaluation)
    threshold = evaluation["site_threshold"]
    figures = Table(
        "holdout",
        "accuracy",
        "escape",
        "false reject",
        "REVIEW",
        "calibration",
        title=f"snapshot {evaluation['snapshot_id']} holdout ({evaluation['holdout']} parts), "
        f"site threshold {threshold:.2f}",
    )
    target = Table(
        "holdout",
        "threshold",
        "escape",
        "false reject",
        "REVIEW",
        title=f"lowest threshold with escape rate ≤ {rows[0][2]['target']:.1%}",
    )
    confusion = Table("holdout", "label", "→ PASS", "→ FAIL", "→ REVIEW", title="confusion")
    for label, m, t in rows:
        figures.add_row(
            terminal(label),
            _pct(m["accuracy"]),
            _pct(m["escape_rate"]),
            _pct(m["false_reject_rate"]),
            _pct(m["review_rate"]),
            f"{m['calibration_error']:.3f}",
        )
        target.add_row(
            terminal(label),
            f"{t['threshold']:.3f}",
            _pct(t["escape_rate"]),
            _pct(t["false_reject_rate"]),
            _pct(t["review_rate"]),
        )
        for truth in ("PASS", "FAIL"):
            cells = m["confusion"][truth]
            confusion.add_row(
                terminal(label), truth, *(str(cells[d]) for d in ("PASS", "FAIL", "REVIEW"))
            )
    return [figures, confusion, target]


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
    settings = _settings(ctx)
    store = _open(settings)
    try:
        done = evaluate_adapter(store, settings, ref, _who(by))
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    if as_json:
        print(json_line(done.evaluation, indent=2))
        return
    for table in _eval_tables(done.evaluation):
        console.print(table)
    console.print(
        f"majority class accuracy {_pct(done.evaluation['majority_accuracy'])}; stored with "
        f"{terminal(done.adapter.ref)}, compared with {terminal(_ref(done.baseline))}"
    )


def _announce(settings: Settings, change: Any) -> None:
    from inspector.errors import InspectorError
    from inspector.train.registry import announcement, publish_announcement

    message = announcement(change.site, change.active)
    try:
        publish_announcement(settings.broker, message)
    except InspectorError as exc:
        err_console.print(f"warning: {exc.message}", markup=False, soft_wrap=True)
        raise typer.Exit(code=3) from None
    console.print(
        f"announced to the workers of site {terminal(change.site)}: {terminal(_ref(change.active))}"
    )


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
    store = _open(settings)
    try:
        change = promote(store, ref, _who(by), force=force, reason=reason)
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
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
    store = _open(settings)
    try:
        change = rollback(store, site, _who(by), reason)
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
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
    from inspector.train.registry import retire

    store = _open(_settings(ctx))
    try:
        row = retire(store, ref, _who(by), reason)
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    console.print(f"{terminal(row.ref)} retired")


@adapters_app.command("announce")
def adapters_announce(ctx: typer.Context, site: SiteOpt) -> None:
    """Publish the site's active adapter from the registry again (after a broker outage)."""
    from inspector.store.adapters import active_adapter
    from inspector.train.registry import Change

    settings = _settings(ctx)
    store = _open(settings)
    try:
        with store.db.read() as session:
            active = active_adapter(session, site)
    finally:
        store.close()
    _announce(settings, Change(site, active, None))


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
        done = run_training(
            store,
            settings,
            site,
            _who(by),
            since=_when(since, "--since"),
            until=_when(until, "--until"),
            out=out,
            console=err_console,
        )
    except InspectorError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    table = Table("split", "PASS", "FAIL", "total", "FAIL share", title="class balance")
    for split, n_pass, n_fail, total, share in balance_report(done.snapshot):
        table.add_row(split, str(n_pass), str(n_fail), str(total), share)
    console.print(table)
    for table in _eval_tables(done.adapter.metrics["eval"]):
        console.print(table)
    losses = done.result.epoch_losses
    console.print(
        f"candidate {terminal(done.adapter.ref)} (sha256 {done.adapter.sha256[:16]}…), "
        f"loss {losses[0]:.3f} → {losses[-1]:.3f} in {done.result.seconds:.0f} s"
    )
