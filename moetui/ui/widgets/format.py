"""Small text helpers shared by the UI-core widgets and screens (no Textual here)."""

from __future__ import annotations

GB = 10**9


def gb(n: int | float | None) -> str:
    """Decimal GB like the sizing core's explanation, so numbers on screen match `moetui plan`."""
    if n is None:
        return "?"
    if abs(n) >= 100 * GB:
        return f"{n / GB:.0f} GB"  # 3 digits are plenty and keep table columns narrow
    if abs(n) >= GB:
        return f"{n / GB:.1f} GB"
    if abs(n) >= 10**6:
        return f"{n / 10**6:.0f} MB"
    return f"{n / 1000:.0f} kB"


PLAN_MODES = {"cpu_only": "CPU only", "all_gpu": "all on GPU", "experts_split": "experts split between GPU and RAM",
              "partial_layers": "some layers on GPU"}


def plan_mode(mode: str) -> str:
    """A plan's placement mode in words ("experts_split" -> "experts split between GPU and RAM")."""
    return PLAN_MODES.get(mode, mode.replace("_", " "))


def tps(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def bar(fraction: float, width: int, full: str = "█", empty: str = "░") -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    n = round(fraction * width)
    return full * n + empty * (width - n)
