"""Charts as SVG drawn on the server with matplotlib (no script reaches the browser)."""

from __future__ import annotations

import io
import threading

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

_lock = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe


def _svg(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="svg", bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


def per_hour(per_line: dict[str, list[int]]) -> bytes:
    """Verdicts per hour of day (UTC), one line per site/line."""
    with _lock:
        fig, ax = plt.subplots(figsize=(7, 2.8))
        for name, counts in list(per_line.items())[:12]:
            ax.plot(range(24), counts, marker=".", label=name)
        ax.set_xlabel("hour of day (UTC)")
        ax.set_ylabel("verdicts")
        ax.set_xticks(range(0, 24, 3))
        if per_line:
            ax.legend(fontsize="small", ncols=2)
        return _svg(fig)


def threshold_curve(points: list[dict[str, float | None]], current: float) -> bytes:
    """Escapes per defective part, false rejects per good part and the REVIEW share over the
    threshold, with the chosen one marked."""
    with _lock:
        fig, ax = plt.subplots(figsize=(7, 2.8))
        xs = [float(p["threshold"] or 0) for p in points]
        for key, label in (
            ("escapes_per_defective_part", "escapes / defective part"),
            ("false_rejects_per_good_part", "false rejects / good part"),
            ("review_share", "REVIEW share"),
        ):
            ax.plot(xs, [float(p[key] or 0) for p in points], marker=".", label=label)
        ax.axvline(current, linestyle="--", color="grey")
        ax.set_xlabel("confidence threshold")
        ax.set_ylabel("share")
        ax.legend(fontsize="small")
        return _svg(fig)
