"""The inspection domain, torch-free and SQL-free: one meaning for every rule and rate.

`decide` is the one leaning-and-threshold rule; `rates` defines each rate once, named by
its denominator; `holdout` holds the typed results a promotion is judged on; `AdapterRef`
names an adapter version from the registry to the GPU.
"""

from __future__ import annotations

from inspector.quality.adapters import BASE, AdapterRef, is_base, served_name, tag_of
from inspector.quality.decision import Decided, Decision, confidence, decide, leaning
from inspector.quality.holdout import (
    DEFAULT_THRESHOLDS,
    Baseline,
    Evaluation,
    HoldoutMetrics,
    TargetPoint,
    WhatIf,
    calibration_error,
    holdout_metrics,
    stored_evaluation,
    sweep,
    threshold_for_escape_target,
    what_if,
)
from inspector.quality.rates import (
    FIGURE,
    FIGURES,
    LABELS,
    Confusion,
    Figure,
    Label,
    Outcome,
    Rates,
    confusion_at,
    percent,
    ppm,
    rates_of,
    shown,
)

__all__ = [
    "BASE",
    "DEFAULT_THRESHOLDS",
    "FIGURE",
    "FIGURES",
    "LABELS",
    "AdapterRef",
    "Baseline",
    "Confusion",
    "Decided",
    "Decision",
    "Evaluation",
    "Figure",
    "HoldoutMetrics",
    "Label",
    "Outcome",
    "Rates",
    "TargetPoint",
    "WhatIf",
    "calibration_error",
    "confidence",
    "confusion_at",
    "decide",
    "holdout_metrics",
    "is_base",
    "leaning",
    "percent",
    "ppm",
    "rates_of",
    "served_name",
    "shown",
    "stored_evaluation",
    "sweep",
    "tag_of",
    "threshold_for_escape_target",
    "what_if",
]
