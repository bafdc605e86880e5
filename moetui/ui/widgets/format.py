"""Small text helpers shared by the UI-core widgets and screens (no Textual here)."""

from __future__ import annotations

from moetui.config.units import GIB, MIB, gib  # noqa: F401  (re-exported: bytes on screen, one formatter)


# the same words as moetui.sizing.explain.MODE_WORDS (not imported: this module stays light; a test holds them equal)
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
