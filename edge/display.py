"""Shows verdicts at the station: one coloured line per answer, or a large panel; hook; timeouts.

Verdicts and rejections arrive on the station's own topics. Each is matched to the capture
in the spool, shown once, and handed to the optional hook command (a tower light, a PLC
bridge) as JSON on stdin. Captures without an answer in time are flagged on screen.

Verdict first: a worker publishes the verdict straight after the prefill, usually with its
rationale pending ("rationale follows…"), and the rationale (with the voice note's
transcript and the defects it names) follows on the station's rationale topic. The board
shows it once, as a follow-up line or panel; the verdict alone is the station's answer, so
neither the spool nor the hook hears about rationales.

The board is compact by default: one line per answer (time, PASS / FAIL / REVIEW in its
colour, part, confidence, latency, the start of the rationale), so fifteen verdicts fit on
fifteen lines. With `panels` each verdict gets the large panel (block letters, the whole
rationale, defects, the voice note's transcript); `show_latest()` prints the latest one's
panel on request.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from inspector.codes import NOT_PRODUCED_WHY
from inspector.errors import Code
from inspector.protocol import (
    DefectFinding,
    RationaleMessage,
    RationaleState,
    RejectionMessage,
    VerdictMessage,
    parse_rationale,
    parse_rejection,
    parse_verdict,
)
from inspector.safetext import terminal, visible

from .config import DisplaySettings
from .spool import CaptureRecord, Spool

log = logging.getLogger(__name__)

STYLES = {
    "PASS": "bold white on green",
    "FAIL": "bold white on red",
    "REVIEW": "bold black on yellow",
    "REJECTED": "bold white on magenta",
}

# How many captures the board remembers as explained, so that a redelivered rationale is
# shown once: redeliveries come within seconds, far fewer captures than this.
EXPLAINED_MEMORY = 4096

_FONT = {
    "P": ["████ ", "█   █", "████ ", "█    ", "█    "],
    "A": [" ███ ", "█   █", "█████", "█   █", "█   █"],
    "S": [" ████", "█    ", " ███ ", "    █", "████ "],
    "F": ["█████", "█    ", "████ ", "█    ", "█    "],
    "I": ["███", " █ ", " █ ", " █ ", "███"],
    "L": ["█    ", "█    ", "█    ", "█    ", "█████"],
    "R": ["████ ", "█   █", "████ ", "█  █ ", "█   █"],
    "E": ["█████", "█    ", "████ ", "█    ", "█████"],
    "V": ["█   █", "█   █", "█   █", " █ █ ", "  █  "],
    "W": ["█   █", "█   █", "█ █ █", "██ ██", "█   █"],
}


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


# The operator's note (typed or spoken) contradicts the verdict: a person should look.
NOTE_DISAGREES = "note disagrees"


def _resent(resends: int) -> str:
    return f"   re-sent ({resends})" if resends else ""


def _clock() -> str:
    return time.strftime("%H:%M:%S")


V = TypeVar("V")


def _remember(memory: OrderedDict[str, V], key: str, value: V) -> None:
    memory[key] = value
    memory.move_to_end(key)
    if len(memory) > EXPLAINED_MEMORY:
        memory.popitem(last=False)


def _found(defects: Sequence[DefectFinding]) -> str:
    return ", ".join(d.type + (f" ({d.where})" if d.where else "") for d in defects)


def not_produced_text(reason: str | None) -> str:
    """What the station says instead of a rationale that was not produced, by its reason."""
    # A rationale message without a reason comes from a worker that stopped.
    why = NOT_PRODUCED_WHY.get(reason or Code.RATIONALE_WORKER_LOST)
    return f"no rationale: {why}" if why else f"no rationale ({visible(reason or '')})"


def block_letters(word: str) -> str:
    """`word` in five-row block letters (only the letters of PASS, FAIL and REVIEW)."""
    rows = ["  ".join(_FONT[ch][row] for ch in word) for row in range(5)]
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the station learnt about one capture: a verdict, a rejection, or silence."""

    kind: str  # PASS | FAIL | REVIEW | REJECTED | NO_VERDICT
    request_id: str
    part_id: str | None
    repeat: bool = False


OutcomeListener = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class RationaleOutcome:
    """What the station learnt about a verdict's rationale after the verdict."""

    state: str  # produced | skipped | not_produced
    request_id: str
    part_id: str
    repeat: bool = False  # already shown (a redelivery, or it came with a verdict)


RationaleListener = Callable[[RationaleOutcome], None]


class HookRunner:
    """Runs the hook command per outcome, off the MQTT thread, with a timeout."""

    def __init__(self, argv: list[str], timeout_s: float, console: Console) -> None:
        self._argv = argv
        self._timeout = timeout_s
        self._console = console
        self._busy = threading.Condition()
        self._running = 0

    def submit(self, payload: bytes) -> None:
        """Start the hook with `payload` on its stdin."""
        with self._busy:
            self._running += 1
        threading.Thread(target=self._run, args=(payload,), name="edge-hook", daemon=True).start()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no hook is running, or `timeout`."""
        with self._busy:
            return self._busy.wait_for(lambda: self._running == 0, timeout)

    def _run(self, payload: bytes) -> None:
        try:
            done = subprocess.run(
                self._argv, input=payload, capture_output=True, timeout=self._timeout, check=False
            )
            if done.returncode != 0:
                err = done.stderr.decode(errors="replace").strip()[-200:]
                self._console.print(
                    f"[yellow]hook {self._argv[0]} exited {done.returncode}[/] {terminal(err)}"
                )
        except subprocess.TimeoutExpired:
            self._console.print(f"[yellow]hook {self._argv[0]} killed after {self._timeout:g} s[/]")
        except OSError as exc:
            self._console.print(f"[yellow]hook {self._argv[0]} cannot run: {exc.strerror}[/]")
        finally:
            with self._busy:
                self._running -= 1
                self._busy.notify_all()


class VerdictBoard:
    """Renders the answers for one station and flags captures that got none."""

    def __init__(
        self,
        console: Console,
        spool: Spool,
        settings: DisplaySettings,
        on_outcome: OutcomeListener | None = None,
        *,
        panels: bool = False,
    ) -> None:
        self._console = console
        self._spool = spool
        self._settings = settings
        self._panels = panels
        self._latest: tuple[VerdictMessage, bool, int] | None = None
        self._listeners: list[OutcomeListener] = [on_outcome] if on_outcome else []
        self._rationale_listeners: list[RationaleListener] = []
        # Per capture, what the screen last said of its rationale, oldest first; and the
        # rationales that overtook their verdicts, held to be shown with them.
        self._shown: OrderedDict[str, RationaleState] = OrderedDict()
        self._held: OrderedDict[str, RationaleMessage] = OrderedDict()
        self._explained_lock = threading.Lock()
        self.hook = (
            HookRunner(settings.hook, settings.hook_timeout_s, console) if settings.hook else None
        )

    def add_listener(self, listener: OutcomeListener) -> None:
        """Also tell `listener` about every outcome."""
        self._listeners.append(listener)

    def add_rationale_listener(self, listener: RationaleListener) -> None:
        """Also tell `listener` about every rationale message, repeats included."""
        self._rationale_listeners.append(listener)

    def handle_verdict(self, payload: bytes) -> VerdictMessage | None:
        """Show a verdict message from the station's verdict topic."""
        try:
            msg = parse_verdict(payload)
        except ValidationError as exc:
            self._console.print(f"[yellow]unreadable verdict ignored:[/] {terminal(_first(exc))}")
            return None
        rid = str(msg.request_id)
        before = self._spool.record_outcome(rid, msg.verdict.value)
        repeat = before is not None and before.outcome is not None
        if repeat:
            # Redelivered requests get their stored verdict again; show it once.
            self._console.print(
                f"[dim]repeat verdict {msg.verdict.value} for part {terminal(msg.part_id)}[/]"
            )
            final = msg.rationale_state is not RationaleState.PENDING
            if final and self._news(rid, msg.rationale_state):
                # The stored verdict has its rationale by now, and its own rationale message
                # has not come (its worker stopped before publishing it): show this one.
                self._show_rationale(_rationale_of(msg), msg.verdict.value)
        else:
            late = before is not None and before.flagged_at is not None
            resends = before.resends if before is not None else 0
            held = self._take_held(rid)
            shown = msg.with_rationale(held) if held is not None else msg
            if shown.rationale_state is not RationaleState.PENDING:
                self._news(rid, shown.rationale_state)
            self._latest = (shown, late, resends)
            if self._panels:
                self._console.print(self._verdict_panel(shown, late, resends))
            else:
                self._line(self._verdict_line(shown, late, resends))
            if self.hook is not None:
                self.hook.submit(payload)
        self._emit(Outcome(msg.verdict.value, rid, msg.part_id, repeat))
        return msg

    def handle_rationale(self, payload: bytes) -> RationaleMessage | None:
        """Show a rationale message from the station's rationale topic; repeats are not shown."""
        try:
            msg = parse_rationale(payload)
        except ValidationError as exc:
            self._console.print(f"[yellow]unreadable rationale ignored:[/] {terminal(_first(exc))}")
            return None
        rid = str(msg.request_id)
        rec = self._spool.capture(rid)
        if rec is not None and rec.outcome is None:
            # It overtook its verdict (a broker may deliver two topics out of order): the
            # verdict comes first on screen, so it is shown with the verdict.
            news = self._hold(rid, msg)
        else:
            news = self._news(rid, msg.rationale_state)
            if news:
                # A capture the station no longer remembers (pruned from its history) still
                # shows its rationale, under the message's part id, without a verdict word.
                word = rec.outcome if rec is not None and rec.outcome in STYLES else None
                self._show_rationale(msg, word)
                self._update_latest(msg)
        outcome = RationaleOutcome(msg.rationale_state.value, rid, msg.part_id, not news)
        for listener in self._rationale_listeners:
            try:
                listener(outcome)
            except Exception:
                log.exception("rationale listener failed")
        return msg

    def handle_rejection(self, payload: bytes) -> RejectionMessage | None:
        """Show a rejection message from the station's rejected topic."""
        try:
            msg = parse_rejection(payload)
        except ValidationError as exc:
            self._console.print(f"[yellow]unreadable rejection ignored:[/] {terminal(_first(exc))}")
            return None
        rid = str(msg.request_id) if msg.request_id else ""
        before = self._spool.record_outcome(rid, "REJECTED") if rid else None
        part = before.part_id if before else None
        repeat = before is not None and before.outcome is not None
        if not repeat:
            resends = before.resends if before else 0
            if self._panels:
                self._console.print(self._rejection_panel(msg, part, rid, resends))
            else:
                self._line(
                    Text.assemble(
                        (_clock(), "dim"),
                        " ",
                        (" REJECTED ", STYLES["REJECTED"]),
                        " ",
                        (f"part {visible(part or '?')}", "bold"),
                        "   ",
                        (visible(msg.code), "bold magenta"),
                        (_resent(resends), "yellow"),
                        "  ",
                        visible(msg.message),
                    )
                )
            if self.hook is not None:
                self.hook.submit(payload)
        self._emit(Outcome("REJECTED", rid, part, repeat))
        return msg

    def check_overdue(self, now: float | None = None) -> list[CaptureRecord]:
        """Flag (once) every capture still without an answer after the verdict timeout."""
        when = time.time() if now is None else now
        late = self._spool.overdue(when - self._settings.verdict_timeout_s)
        for rec in late:
            self._spool.flag(rec.request_id, when)
            where = (
                "still in the spool (broker unreachable?)"
                if rec.published_at is None
                else "delivered, but no worker answered yet; the station re-sends it"
            )
            if not self._panels:
                self._line(
                    Text.assemble(
                        (_clock(), "dim"),
                        " ",
                        (" NO VERDICT ", "bold black on bright_white"),
                        " ",
                        (f"part {visible(rec.part_id)}", "bold"),
                        f"   after {when - rec.captured_at:.0f} s: {where}",
                    )
                )
                self._emit(Outcome("NO_VERDICT", rec.request_id, rec.part_id))
                continue
            self._console.print(
                Panel(
                    Text.assemble(
                        ("NO VERDICT", "bold black on bright_white"),
                        "  ",
                        (f"part {visible(rec.part_id)}", "bold"),
                        f" after {when - rec.captured_at:.0f} s: {where}",
                    ),
                    title=f"request {rec.request_id}",
                    border_style="bright_white",
                )
            )
            self._emit(Outcome("NO_VERDICT", rec.request_id, rec.part_id))
        return late

    def _rejection_panel(
        self, msg: RejectionMessage, part: str | None, rid: str, resends: int
    ) -> Panel:
        body = Text.assemble(
            ("REJECTED", STYLES["REJECTED"]),
            "  ",
            (f"part {visible(part or '?')}  ", "bold"),
            (visible(msg.code), "bold magenta"),
            (_resent(resends), "yellow"),
            "\n",
            visible(msg.message, multiline=True),
        )
        return Panel(body, title=f"request {rid or 'unknown'}", border_style="magenta")

    def _news(self, rid: str, state: RationaleState) -> bool:
        """Remember `state` as what the screen says of `rid`'s rationale; False if no news.

        A rationale that comes after all, once a live worker marked it not produced (its
        worker was slow, not dead), is news; anything else after the first is a repeat.
        """
        with self._explained_lock:
            before = self._shown.get(rid)
            if before is not None and (
                before is not RationaleState.NOT_PRODUCED or state is RationaleState.NOT_PRODUCED
            ):
                return False
            _remember(self._shown, rid, state)
            return True

    def _hold(self, rid: str, msg: RationaleMessage) -> bool:
        """Keep a rationale until its verdict comes; False if one was held already."""
        with self._explained_lock:
            news = rid not in self._held
            _remember(self._held, rid, msg)
            return news

    def _take_held(self, rid: str) -> RationaleMessage | None:
        with self._explained_lock:
            return self._held.pop(rid, None)

    def _show_rationale(self, msg: RationaleMessage, word: str | None) -> None:
        state = msg.rationale_state
        if state is RationaleState.SKIPPED and not msg.transcript and not msg.note_disagrees:
            return  # the verdict said all there is
        if self._panels:
            self._console.print(self._rationale_panel(msg, word))
            return
        if state is RationaleState.SKIPPED and not msg.note_disagrees:
            return  # a transcript only: in the panel (`v`), not on the one-line board
        line = Text.assemble(
            (_clock(), "dim"),
            " ",
            ("  ↳ ", "dim"),
            (f"part {visible(msg.part_id)}", "bold"),
            (f" {word}" if word else "", STYLES[word].split()[-1] if word else ""),
        )
        if state is RationaleState.NOT_PRODUCED:
            line.append(f"   {not_produced_text(msg.reason)}", style="yellow")
        else:
            if msg.defects:
                line.append(f"   {visible(_found(msg.defects))}", style="bold")
            if msg.note_disagrees:  # the transcript may be what disagrees
                line.append(f"   {NOTE_DISAGREES}", style="bold magenta")
            line.append(f"   {visible(msg.rationale)}")
        self._line(line)

    def _rationale_panel(self, msg: RationaleMessage, word: str | None) -> Panel:
        lines = [
            Text.assemble(
                "rationale for ",
                (f"part {visible(msg.part_id)}", "bold"),
                (f"  {word}" if word else "", STYLES[word] if word else ""),
            )
        ]
        if msg.rationale_state is RationaleState.NOT_PRODUCED:
            lines.append(Text(not_produced_text(msg.reason), style="yellow"))
        elif msg.rationale:
            lines.append(Text(visible(msg.rationale, multiline=True)))
        if msg.defects:
            lines.append(Text(f"defects: {visible(_found(msg.defects))}", style="bold"))
        if msg.transcript:
            lines.append(Text(f"voice note: {visible(msg.transcript)}", style="italic"))
        if msg.note_disagrees:
            lines.append(Text(NOTE_DISAGREES, style="bold magenta"))
        border = STYLES[word].split()[-1] if word else "white"
        return Panel(Group(*lines), title=f"request {msg.request_id}", border_style=border)

    def _update_latest(self, msg: RationaleMessage) -> None:
        # `v` shows the latest verdict's panel with the rationale that followed it.
        latest = self._latest
        if latest is None or latest[0].request_id != msg.request_id:
            return
        self._latest = (latest[0].with_rationale(msg), latest[1], latest[2])

    def show_latest(self) -> bool:
        """Print the latest verdict's large panel (False when there is none yet)."""
        if self._latest is None:
            return False
        self._console.print(self._verdict_panel(*self._latest))
        return True

    def _line(self, text: Text) -> None:
        # One line whatever the width: the rest of a long rationale is in the panel.
        self._console.print(text, no_wrap=True, overflow="ellipsis", crop=True)

    def _verdict_line(self, msg: VerdictMessage, late: bool, resends: int) -> Text:
        word = msg.verdict.value
        line = Text.assemble(
            (_clock(), "dim"),
            " ",
            (f" {word:<6} ", STYLES[word]),
            " ",
            (f"part {visible(msg.part_id)}", "bold"),
            f"   confidence {msg.confidence:.2f}   {msg.latency_ms:.0f} ms",
            (_resent(resends), "bold yellow"),
            (" (late: arrived after the verdict timeout)" if late else "", "dim"),
        )
        if msg.defects:
            line.append(f"   {visible(_found(msg.defects))}", style="bold")
        if msg.note_disagrees:
            line.append(f"   {NOTE_DISAGREES}", style="bold magenta")
        if msg.rationale_state is RationaleState.PENDING:
            line.append("   rationale follows…", style="dim")
        elif msg.rationale_state is RationaleState.NOT_PRODUCED:
            line.append(f"   {not_produced_text(None)}", style="yellow")
        elif msg.rationale:
            line.append(f"   {visible(msg.rationale)}")
        return line

    def _verdict_panel(self, msg: VerdictMessage, late: bool, resends: int = 0) -> Panel:
        word = msg.verdict.value
        style = STYLES[word]
        head = Text(block_letters(word) if self._settings.big else f" {word} ", style=style)
        lines = [
            head,
            Text.assemble(
                (f"part {visible(msg.part_id)}", "bold"),
                f"   confidence {msg.confidence:.2f}   {msg.latency_ms:.0f} ms"
                f"   adapter {visible(msg.adapter)}",
                (_resent(resends), "bold yellow"),
            ),
        ]
        if msg.rationale_state is RationaleState.PENDING:
            lines.append(Text("rationale follows…", style="dim"))
        elif msg.rationale_state is RationaleState.NOT_PRODUCED:
            lines.append(Text(not_produced_text(None), style="yellow"))
        elif msg.rationale:
            lines.append(Text(visible(msg.rationale, multiline=True)))
        if msg.defects:
            lines.append(Text(f"defects: {visible(_found(msg.defects))}", style="bold"))
        if msg.transcript:
            lines.append(Text(f"voice note: {visible(msg.transcript)}", style="italic"))
        if msg.note_disagrees:
            lines.append(Text(NOTE_DISAGREES, style="bold magenta"))
        if late:
            lines.append(Text("(arrived after the verdict timeout)", style="dim"))
        return Panel(
            Group(*lines), title=f"request {msg.request_id}", border_style=style.split()[-1]
        )

    def _emit(self, outcome: Outcome) -> None:
        for listener in self._listeners:
            try:
                listener(outcome)
            except Exception:
                log.exception("outcome listener failed")


def _rationale_of(verdict: VerdictMessage) -> RationaleMessage:
    """The rationale a re-published verdict carries, as its rationale message would bring it."""
    return RationaleMessage(
        request_id=verdict.request_id,
        site=verdict.site,
        line=verdict.line,
        station=verdict.station,
        part_id=verdict.part_id,
        rationale_state=verdict.rationale_state,
        rationale=verdict.rationale,
        transcript=verdict.transcript,
        defects=verdict.defects,
        note_disagrees=verdict.note_disagrees,
        worker_id=verdict.worker_id,
        written_at=verdict.decided_at,
    )
