"""The review numbers, from the store's aggregates.

Rates over reviewed inspections use the latest review as the truth:
- agreement: the model's PASS/FAIL equals the reviewer's, among reviewed items the model decided;
- escape rate: model PASS, reviewer FAIL, as a share of reviewed items;
- false-reject rate: model FAIL, reviewer PASS, as a share of reviewed items;
- REVIEW rate: REVIEW verdicts as a share of all verdicts (of reviewed items, in the what-if).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from inspector.store.tallies import BUCKETS

VERDICTS = ("PASS", "FAIL", "REVIEW")
FINALS = ("PASS", "FAIL")


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Tally:
    """Counts for one group (a site and adapter, or everything)."""

    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    confusion: dict[str, dict[str, int]] = field(
        default_factory=lambda: {v: dict.fromkeys(FINALS, 0) for v in VERDICTS}
    )

    @property
    def inspections(self) -> int:
        """Every verdict counted."""
        return sum(self.verdicts.values())

    @property
    def reviewed(self) -> int:
        """Inspections with a review."""
        return sum(sum(row.values()) for row in self.confusion.values())

    def rates(self) -> dict[str, float | int | None]:
        """The group's headline numbers."""
        c = self.confusion
        decided = sum(c["PASS"].values()) + sum(c["FAIL"].values())
        return {
            "inspections": self.inspections,
            "reviewed": self.reviewed,
            "review_rate": _rate(self.verdicts["REVIEW"], self.inspections),
            "agreement": _rate(c["PASS"]["PASS"] + c["FAIL"]["FAIL"], decided),
            "escape_rate": _rate(c["PASS"]["FAIL"], self.reviewed),
            "false_reject_rate": _rate(c["FAIL"]["PASS"], self.reviewed),
        }


def tally(
    verdict_rows: list[tuple[str, str, str, int]],
    reviewed_rows: list[tuple[str, str, str, str, int]],
) -> tuple[dict[tuple[str, str], Tally], Tally]:
    """Per (site, adapter) tallies and the overall tally."""
    groups: dict[tuple[str, str], Tally] = defaultdict(Tally)
    total = Tally()
    for site, adapter, verdict, n in verdict_rows:
        if verdict in VERDICTS:
            groups[(site, adapter)].verdicts[verdict] += n
            total.verdicts[verdict] += n
    for site, adapter, verdict, final, n in reviewed_rows:
        if verdict in VERDICTS and final in FINALS:
            groups[(site, adapter)].confusion[verdict][final] += n
            total.confusion[verdict][final] += n
    return dict(sorted(groups.items())), total


def per_line_hour(hour_rows: list[tuple[str, str, int, int]]) -> dict[str, list[int]]:
    """Verdicts per site/line and hour of day."""
    per_line: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    for site, line, hour, n in hour_rows:
        per_line[f"{site}/{line}"][hour % 24] += n
    return dict(sorted(per_line.items()))


def what_if(histogram: list[tuple[int, str, int]], threshold: float) -> dict[str, float | None]:
    """Escape, false-reject and REVIEW rates of reviewed items had the threshold been this.

    The decision rule is the engine's: lean PASS when P(PASS) >= 0.5, REVIEW when the
    leaning's probability is below the threshold.
    """
    reviewed = escapes = false_rejects = reviews = 0
    for bucket, final, n in histogram:
        p_pass = (bucket + 0.5) / BUCKETS
        reviewed += n
        confidence = max(p_pass, 1 - p_pass)
        if confidence < threshold:
            reviews += n
        elif p_pass >= 0.5 and final == "FAIL":
            escapes += n
        elif p_pass < 0.5 and final == "PASS":
            false_rejects += n
    return {
        "threshold": threshold,
        "escape_rate": _rate(escapes, reviewed),
        "false_reject_rate": _rate(false_rejects, reviewed),
        "review_rate": _rate(reviews, reviewed),
    }


def what_if_curve(
    histogram: list[tuple[int, str, int]], thresholds: list[float]
) -> list[dict[str, float | None]]:
    """what_if at each threshold."""
    return [what_if(histogram, t) for t in thresholds]


DEFAULT_THRESHOLDS = [round(0.5 + 0.05 * i, 2) for i in range(10)]
