"""The review numbers, from the store's aggregates, through the rates of `inspector.quality`.

Reviewed inspections take their latest review as the truth. The rates are the quality
module's (escapes per defective part, per shipped part in ppm, false rejects per good part,
verdict accuracy) over the reviewed inspections; the REVIEW share is over every verdict.
The what-if replays the one decision rule on the reviewed P(PASS) histogram.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from inspector.quality import (
    LABELS,
    Confusion,
    Decision,
    Label,
    Outcome,
    WhatIf,
    confusion_at,
    rates_of,
    served_name,
    sweep,
)
from inspector.quality.rates import review_share
from inspector.store.tallies import BUCKETS

VERDICTS = tuple(d.value for d in Decision)
FINALS = LABELS


@dataclass
class Tally:
    """Counts for one group (a site and adapter, or everything)."""

    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    confusion: Confusion = field(default_factory=Confusion)

    @property
    def inspections(self) -> int:
        """Every verdict counted."""
        return sum(self.verdicts.values())

    @property
    def reviewed(self) -> int:
        """Inspections with a review."""
        return self.confusion.parts

    def rates(self) -> dict[str, float | int | None]:
        """The group's headline numbers, named as in `inspector.quality.Rates`."""
        reviewed = rates_of(self.confusion)
        return {
            "inspections": self.inspections,
            "reviewed": self.reviewed,
            "review_share": review_share(self.verdicts["REVIEW"], self.inspections),
            "verdict_accuracy": reviewed["verdict_accuracy"],
            "lean_accuracy": reviewed["lean_accuracy"],
            "majority_share": reviewed["majority_share"],
            "escapes_per_defective_part": reviewed["escapes_per_defective_part"],
            "escapes_per_shipped_part_ppm": reviewed["escapes_per_shipped_part_ppm"],
            "false_rejects_per_good_part": reviewed["false_rejects_per_good_part"],
        }

    def model_to_reviewer(self) -> dict[str, dict[str, int]]:
        """The confusion matrix as the page and the API show it: model verdict → reviewer."""
        return {v: {f: self.confusion.count(f, Decision(v)) for f in FINALS} for v in VERDICTS}


def tally(
    verdict_rows: list[tuple[str, str, str, int]],
    reviewed_rows: list[tuple[str, str, str, str, int]],
) -> tuple[dict[tuple[str, str], Tally], Tally]:
    """Per (site, adapter) tallies and the overall tally (the base under one name)."""
    groups: dict[tuple[str, str], Tally] = defaultdict(Tally)
    total = Tally()
    for site, adapter, verdict, n in verdict_rows:
        if verdict in VERDICTS:
            groups[(site, served_name(adapter))].verdicts[verdict] += n
            total.verdicts[verdict] += n
    for site, adapter, verdict, final, n in reviewed_rows:
        if verdict in VERDICTS and final in FINALS:
            label: Label = "PASS" if final == "PASS" else "FAIL"
            groups[(site, served_name(adapter))].confusion.add(label, Decision(verdict), n)
            total.confusion.add(label, Decision(verdict), n)
    return dict(sorted(groups.items())), total


def per_line_hour(hour_rows: list[tuple[str, str, int, int]]) -> dict[str, list[int]]:
    """Verdicts per site/line and hour of day."""
    per_line: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    for site, line, hour, n in hour_rows:
        per_line[f"{site}/{line}"][hour % 24] += n
    return dict(sorted(per_line.items()))


def outcomes(histogram: Iterable[tuple[int, str, int]]) -> list[Outcome]:
    """Reviewed inspections from the P(PASS) histogram: each bucket at its middle."""
    return [
        Outcome("PASS" if final == "PASS" else "FAIL", (bucket + 0.5) / BUCKETS, n)
        for bucket, final, n in histogram
        if final in FINALS
    ]


def lean_right(histogram: Iterable[tuple[int, str, int]], threshold: float) -> int:
    """Reviewed inspections whose leaning equals the reviewer's verdict."""
    lean = confusion_at(outcomes(histogram), threshold).lean_right
    return lean or 0


def what_if_curve(histogram: list[tuple[int, str, int]], thresholds: list[float]) -> list[WhatIf]:
    """The rates of the reviewed inspections had the threshold been each of `thresholds`."""
    return sweep(outcomes(histogram), thresholds)
