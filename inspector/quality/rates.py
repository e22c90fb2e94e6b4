"""Every quality rate, defined once, each named by what it counts per what.

The truth of a part is its reviewed label (the latest review's final verdict): a *good*
part is labelled PASS, a *defective* part FAIL. The model's verdict is PASS, FAIL or
REVIEW. A REVIEW is neither an escape nor a false reject: the part goes to a person.

- escapes per defective part: defective parts decided PASS / defective parts;
- escapes per shipped part, in ppm: defective parts decided PASS / parts decided PASS,
  per million (what the customer receives);
- false rejects per good part: good parts decided FAIL / good parts;
- REVIEW share: parts decided REVIEW / parts judged;
- lean accuracy: parts whose leaning (PASS or FAIL before the threshold) is their label
  / parts judged; always answering the larger class scores the majority share;
- verdict accuracy: parts decided PASS or FAIL whose verdict is their label / parts
  decided PASS or FAIL (REVIEWs left out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inspector.quality.decision import Decision, decide

Label = Literal["PASS", "FAIL"]
LABELS: tuple[Label, ...] = ("PASS", "FAIL")
PPM = 1_000_000


def share(part: int, whole: int) -> float | None:
    """`part / whole`, or None when there is nothing to divide by."""
    return part / whole if whole else None


def _row() -> dict[Decision, int]:
    return dict.fromkeys(Decision, 0)


class Confusion(BaseModel):
    """Parts by label (the reviewer's truth) and by the model's verdict."""

    model_config = ConfigDict(extra="forbid")

    cells: dict[Label, dict[Decision, int]] = Field(
        default_factory=lambda: {label: _row() for label in LABELS},
        title="label → model verdict → parts",
    )
    lean_right: int | None = Field(
        None, title="Parts whose leaning equals their label (None: leanings not known)"
    )

    def count(self, label: Label, verdict: Decision) -> int:
        """Parts with this label that the model decided `verdict`."""
        return self.cells.get(label, {}).get(verdict, 0)

    def label_total(self, label: Label) -> int:
        """Parts with this label."""
        return sum(self.cells.get(label, {}).values())

    def verdict_total(self, verdict: Decision) -> int:
        """Parts the model decided `verdict`."""
        return sum(self.count(label, verdict) for label in LABELS)

    @property
    def parts(self) -> int:
        """Every part counted."""
        return sum(self.label_total(label) for label in LABELS)

    def add(self, label: Label, verdict: Decision, n: int = 1, lean_right: int = 0) -> None:
        """Count `n` more parts (`lean_right` of them leaning to their label)."""
        self.cells.setdefault(label, _row())[verdict] += n
        if self.lean_right is not None or lean_right:
            self.lean_right = (self.lean_right or 0) + lean_right


@dataclass(frozen=True, slots=True)
class Outcome:
    """One judged part: its label, the model's P(PASS), and how many parts it stands for."""

    label: Label
    p_pass: float
    parts: int = 1


def confusion_at(outcomes: Iterable[Outcome], threshold: float) -> Confusion:
    """The confusion matrix the decision rule gives these outcomes at `threshold`."""
    counted = Confusion(lean_right=0)
    for o in outcomes:
        decided = decide(o.p_pass, threshold)
        right = o.parts if decided.leaning.value == o.label else 0
        counted.add(o.label, decided.decision, o.parts, right)
    return counted


def escapes_per_defective_part(c: Confusion) -> float | None:
    """Defective parts decided PASS / defective parts: the share of defects that got out."""
    return share(c.count("FAIL", Decision.PASS), c.label_total("FAIL"))


def escapes_per_shipped_part_ppm(c: Confusion) -> float | None:
    """Defective parts decided PASS per million parts decided PASS: defects shipped, in ppm."""
    escapes = share(c.count("FAIL", Decision.PASS), c.verdict_total(Decision.PASS))
    return None if escapes is None else escapes * PPM


def false_rejects_per_good_part(c: Confusion) -> float | None:
    """Good parts decided FAIL / good parts: scrap or rework the model caused."""
    return share(c.count("PASS", Decision.FAIL), c.label_total("PASS"))


def review_share(reviews: int, judged: int) -> float | None:
    """Parts decided REVIEW / parts judged: the share that goes to a person."""
    return share(reviews, judged)


def verdict_accuracy(c: Confusion) -> float | None:
    """Parts decided PASS or FAIL with their label / parts decided PASS or FAIL."""
    right = c.count("PASS", Decision.PASS) + c.count("FAIL", Decision.FAIL)
    return share(right, c.parts - c.verdict_total(Decision.REVIEW))


def lean_accuracy(c: Confusion) -> float | None:
    """Parts whose leaning (before the threshold) is their label / parts judged."""
    return None if c.lean_right is None else share(c.lean_right, c.parts)


def majority_share(c: Confusion) -> float | None:
    """The larger label's parts / parts: the lean accuracy of always answering that label."""
    return share(max(c.label_total("PASS"), c.label_total("FAIL")), c.parts)


class Rates(BaseModel):
    """The rates of one confusion matrix, named by what they count per what."""

    model_config = ConfigDict(extra="forbid")

    parts: int
    good_parts: int
    defective_parts: int
    escapes_per_defective_part: float | None
    escapes_per_shipped_part_ppm: float | None
    false_rejects_per_good_part: float | None
    review_share: float | None
    verdict_accuracy: float | None
    lean_accuracy: float | None
    majority_share: float | None

    @classmethod
    def of(cls, c: Confusion) -> Rates:
        """Every rate of `c`."""
        return cls(**rates_of(c))


def rates_of(c: Confusion) -> dict[str, int | float | None]:
    """Every rate of `c`, by name (the fields of `Rates`)."""
    return {
        "parts": c.parts,
        "good_parts": c.label_total("PASS"),
        "defective_parts": c.label_total("FAIL"),
        "escapes_per_defective_part": escapes_per_defective_part(c),
        "escapes_per_shipped_part_ppm": escapes_per_shipped_part_ppm(c),
        "false_rejects_per_good_part": false_rejects_per_good_part(c),
        "review_share": review_share(c.verdict_total(Decision.REVIEW), c.parts),
        "verdict_accuracy": verdict_accuracy(c),
        "lean_accuracy": lean_accuracy(c),
        "majority_share": majority_share(c),
    }


# --- how people see them -------------------------------------------------------------------


def percent(value: float | None) -> str:
    """A share as people read it: 12.5 %, or — when there is nothing to divide by."""
    return "—" if value is None else f"{100 * value:.1f} %"


def ppm(value: float | None) -> str:
    """Parts per million as people read them: 1,250 ppm, or —."""
    return "—" if value is None else f"{value:,.0f} ppm"


@dataclass(frozen=True, slots=True)
class Figure:
    """One rate as every screen shows it: its field, its heading, its formatting."""

    key: str
    heading: str
    meaning: str
    show: Callable[[float | None], str]


FIGURES: tuple[Figure, ...] = (
    Figure(
        "escapes_per_defective_part",
        "escapes / defective part",
        "defective parts decided PASS, of the defective parts",
        percent,
    ),
    Figure(
        "escapes_per_shipped_part_ppm",
        "escapes / shipped part",
        "defective parts decided PASS, per million parts decided PASS",
        ppm,
    ),
    Figure(
        "false_rejects_per_good_part",
        "false rejects / good part",
        "good parts decided FAIL, of the good parts",
        percent,
    ),
    Figure("review_share", "REVIEW share", "parts sent to a person, of the parts judged", percent),
    Figure(
        "verdict_accuracy",
        "verdict accuracy",
        "PASS/FAIL verdicts equal to the label, of the parts not sent to REVIEW",
        percent,
    ),
    Figure(
        "lean_accuracy",
        "lean accuracy",
        "leanings (PASS or FAIL before the threshold) equal to the label, of all parts",
        percent,
    ),
    Figure(
        "majority_share",
        "majority class",
        "the lean accuracy of always answering the larger label",
        percent,
    ),
)
FIGURE = {f.key: f for f in FIGURES}


def shown(key: str, value: float | None) -> str:
    """Rate `key` formatted the way every screen shows it."""
    return FIGURE[key].show(value)
