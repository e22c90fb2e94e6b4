"""Champion against challenger on reviewed live inspections: what a shadow run shows.

The champion is the inspection's own verdict (what the site served and the station saw);
the challenger is the shadow adapter's verdict on the same request, from the same batch.
Both are scored against the inspection's reviewed label with the rates of
`inspector.quality.rates`, so an escape or a false reject means here what it means on a
holdout. Agreement compares the two decisions (PASS, FAIL or REVIEW) as published.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from inspector.quality.decision import Decision
from inspector.quality.rates import Confusion, Label, Rates, share


@dataclass(frozen=True, slots=True)
class ShadowPair:
    """One reviewed inspection judged twice: its label, the champion's and the challenger's."""

    label: Label
    champion: Decision
    challenger: Decision


def agreement_share(agreeing: int, pairs: int) -> float | None:
    """Inspections both adapters decided alike / inspections judged by both."""
    return share(agreeing, pairs)


class ShadowComparison(BaseModel):
    """Champion vs challenger on the reviewed inspections both judged."""

    model_config = ConfigDict(extra="forbid")

    champion: str = Field(title="What the site served (name@version, or base)")
    challenger: str = Field(title="The shadow adapter (name@version)")
    reviewed: int = Field(title="Reviewed inspections judged by both")
    agreeing: int = Field(title="Of those, the ones both decided alike")
    agreement: float | None = Field(title="Agreeing / reviewed")
    champion_rates: Rates
    challenger_rates: Rates

    @property
    def disagreeing(self) -> int:
        """Reviewed inspections the two adapters decided differently."""
        return self.reviewed - self.agreeing


def compare(champion: str, challenger: str, pairs: Iterable[ShadowPair]) -> ShadowComparison:
    """Score both adapters on the same reviewed inspections, with the one set of rates."""
    ours, theirs = Confusion(), Confusion()
    reviewed = agreeing = 0
    for pair in pairs:
        reviewed += 1
        agreeing += pair.champion is pair.challenger
        ours.add(pair.label, pair.champion)
        theirs.add(pair.label, pair.challenger)
    return ShadowComparison(
        champion=champion,
        challenger=challenger,
        reviewed=reviewed,
        agreeing=agreeing,
        agreement=agreement_share(agreeing, reviewed),
        champion_rates=Rates.of(ours),
        challenger_rates=Rates.of(theirs),
    )


def shadow_refusal(challenger: str, reviewed: int, required: int) -> str | None:
    """Why a promotion waits for more reviewed shadow inspections, or None."""
    if reviewed >= required:
        return None
    return (
        f"{challenger} has {reviewed} reviewed shadow inspection(s); the site requires "
        f"{required} (sites.<site>.min_shadow_reviews) before a promotion"
    )
