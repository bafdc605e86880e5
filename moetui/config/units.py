"""One byte unit for people: GiB (MiB, KiB below), on every screen, in every command's text and in every
flag that takes a memory amount (moetui.sizing.settings). Bytes everywhere else. The one module that
turns bytes into words."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3


def gib(n: int | float | None) -> str:
    """Bytes on screen, short: "17.3 GiB", "512 MiB", "120 GiB" (3 digits above 100 GiB); "-" for None."""
    if n is None:
        return "-"
    if abs(n) >= 100 * GIB:
        return f"{n / GIB:.0f} GiB"  # 3 digits are plenty and keep table columns narrow
    if abs(n) >= GIB:
        return f"{n / GIB:.1f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.0f} MiB"
    return f"{n / KIB:.0f} KiB"


def gib_fixed(n: int | float) -> str:
    """Bytes in GiB with two decimals, as llama.cpp's log and the plan's explanation print them."""
    return f"{n / GIB:.2f} GiB"


def gib_exact(n: int | float) -> str:
    """A setting's amount with the digits it needs: "0.5 GiB", "12 GiB", "1.25 GiB"."""
    return f"{n / GIB:.3g} GiB"


def human_bytes(n: int | float) -> str:
    """Bytes in the largest binary unit that holds them, two decimals ("1.50 GiB", "12.00 MiB", "10 B")."""
    for unit, div in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


def gib_bytes(amount_gib: float) -> int:
    """GiB (as typed on the command line or in a knob) to bytes."""
    return int(round(amount_gib * GIB))
