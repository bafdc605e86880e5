"""Small text formatters shared by the flow widgets (Chat, Tune, Best config). No Textual imports."""

from __future__ import annotations

import math

def fmt_rate(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_duration(s: float | None) -> str:
    """'-', '42 s', '3 m 05 s', '1 h 02 m'."""
    if s is None or math.isnan(s) or s < 0:  # unknown
        return "-"
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} m"
