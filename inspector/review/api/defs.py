"""Request and response models of the /api/v1 JSON API (not the MQTT wire models)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from inspector.protocol import RationaleState
from inspector.review.edge import SafeText

Decision = Literal["confirm", "override", "answer"]
Final = Literal["PASS", "FAIL"]


class UserOut(BaseModel):
    username: str
    role: str


class Counts(BaseModel):
    """Inspections not yet reviewed by the caller, per queue tab."""

    review: int
    fail: int
    audit: int
    shadow: int = Field(
        description="inspections a site's shadow adapter decided otherwise than the verdict"
    )


class PartOut(BaseModel):
    """Which part an inspection looked at, where and when."""

    request_id: str
    site: str
    line: str
    station: str
    part_id: str
    captured_at: datetime


class QueueItemOut(PartOut):
    verdict: str
    confidence: float
    p_pass: float
    leaning: str = Field(description="PASS or FAIL: the way P(PASS) leans (quality.leaning)")
    adapter: str
    latest_review: str | None = Field(description="the latest reviewer verdict, if any")
    reviewed_by_me: bool
    note_disagrees: bool = Field(
        False, description="the operator's note contradicts the latest verdict"
    )


class QueuePage(BaseModel):
    items: list[QueueItemOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")
    counts: Counts


class CalendarDay(BaseModel):
    day: str
    unreviewed: int


class CalendarOut(BaseModel):
    month: str
    days: list[CalendarDay]


class MediaOut(BaseModel):
    role: str
    sha256: str
    content_type: str
    size: int
    url: str


class DefectOut(BaseModel):
    type: str
    where: str | None = None


class VerdictOut(BaseModel):
    verdict: str
    confidence: float
    p_pass: float
    rationale: str = Field(description="empty unless rationale_state is produced")
    rationale_state: RationaleState = Field(
        description="pending: the worker publishes the rationale after the verdict; produced; "
        "skipped: the site's rationale policy asks none for this verdict; not_produced: its "
        "worker stopped (or failed) before writing it"
    )
    transcript: str | None
    defects: list[DefectOut]
    model: str
    adapter: str
    adapter_fallback: bool
    prompt_version: str
    worker_id: str
    latency_ms: float
    decided_at: datetime
    note_disagrees: bool = Field(
        False, description="the operator's note reports a defect on a PASS or fine on a FAIL"
    )
    rationale_reason: str | None = Field(
        None,
        description="why a not_produced rationale was not: rationale.worker_lost (its worker "
        "stopped) or rationale.engine_failed (the model failed after the verdict); null "
        "otherwise and for verdicts stored before reasons were kept",
    )


class ReviewOut(BaseModel):
    review_id: str
    decision: str
    final_verdict: str
    defect_type: str | None
    comment: str | None
    reviewer: str
    created_at: datetime
    via: str | None = Field(None, description="where it was recorded: page, bulk, api, demo")


class DefectType(BaseModel):
    name: str
    description: str


class InspectionOut(PartOut):
    received_at: datetime
    operator: str | None
    note: str | None
    media: list[MediaOut]
    verdict: VerdictOut | None = Field(description="the latest verdict")
    verdicts: list[VerdictOut] = Field(description="every verdict, oldest first")
    reviews: list[ReviewOut] = Field(description="the review history, oldest first")
    reviewed_by_me: bool
    defect_catalogue: list[DefectType]


class ReviewIn(BaseModel):
    """An explicit answer: confirm the model's PASS or FAIL, or answer PASS or FAIL.

    confirm exists only where the verdict is PASS or FAIL; a REVIEW verdict is answered
    (decision answer, or override) with final_verdict. A FAIL answer names a defect type of
    the site's catalogue (`other` needs a comment); confirming a FAIL takes the model's
    defect type when the catalogue has it.
    """

    decision: Decision
    final_verdict: Final | None = Field(None, description="required to override or answer")
    defect_type: SafeText | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    comment: SafeText | None = Field(None, max_length=2000)
    review_id: UUID | None = Field(None, description="makes a retried POST a no-op")

    @model_validator(mode="after")
    def _answer_names_verdict(self) -> ReviewIn:
        if self.decision != "confirm" and self.final_verdict is None:
            raise ValueError(f"{self.decision} needs final_verdict PASS or FAIL")
        return self


class BulkConfirmIn(BaseModel):
    """Confirm the model's PASS or FAIL on each; any REVIEW verdict among them refuses all."""

    request_ids: list[UUID] = Field(min_length=1, max_length=500)


class BulkAnswerIn(BaseModel):
    """One named answer recorded on every inspection listed (FAIL names its defect type)."""

    request_ids: list[UUID] = Field(min_length=1, max_length=500)
    final_verdict: Final
    defect_type: SafeText | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    comment: SafeText | None = Field(None, max_length=2000)


class Rates(BaseModel):
    """The rates of `inspector.quality`, over reviewed inspections (REVIEW share: all)."""

    inspections: int
    reviewed: int
    review_share: float | None = Field(description="REVIEW verdicts / verdicts")
    verdict_accuracy: float | None = Field(
        description="reviewed PASS/FAIL verdicts the reviewer kept / reviewed PASS/FAIL verdicts"
    )
    lean_accuracy: float | None = Field(
        description="reviewed inspections whose leaning is the reviewer's verdict / reviewed "
        "(total only)"
    )
    majority_share: float | None = Field(description="the larger reviewed verdict / reviewed")
    escapes_per_defective_part: float | None = Field(
        description="reviewed FAIL decided PASS / reviewed FAIL"
    )
    escapes_per_shipped_part_ppm: float | None = Field(
        description="reviewed FAIL decided PASS per million reviewed decided PASS"
    )
    false_rejects_per_good_part: float | None = Field(
        description="reviewed PASS decided FAIL / reviewed PASS"
    )


class GroupStats(Rates):
    site: str
    adapter: str


class WhatIf(BaseModel):
    threshold: float
    escapes_per_defective_part: float | None
    escapes_per_shipped_part_ppm: float | None
    false_rejects_per_good_part: float | None
    review_share: float | None


class StatsOut(BaseModel):
    groups: list[GroupStats] = Field(description="per site and adapter version")
    total: Rates
    confusion: dict[str, dict[str, int]] = Field(description="model verdict → reviewer verdict")
    what_if: list[WhatIf]
    per_line_hour: dict[str, list[int]] = Field(description="line → verdicts per hour of day")
