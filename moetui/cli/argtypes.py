"""argparse types for numbers that must be finite and in range: `float("nan")`, "inf" and "1e300" all
parse as floats, and each used to reach the sizing arithmetic (tracebacks) or a loop that never ends
(a NaN budget is never exceeded)."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def finite_float(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """A float in [lo, hi] ((lo, hi] with lo_open); argparse reports anything else as a usage error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < lo or (lo_open and value == lo) or value > hi:
            low = f"> {lo:g}" if lo_open else f">= {lo:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {low} and <= {hi:g})")
        return value

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse


# shared limits, far beyond any real rig; the sign is checked where the value is used (one message for
# "must be >= 0" whether it came from the command line or a config)
GIB_AMOUNT = finite_float(-1e6, 1e6)  # a memory amount in GiB, up to ~1 PiB
SECONDS_BUDGET = finite_float(-1e9, 7 * 86400.0)  # a time budget, at most a week
