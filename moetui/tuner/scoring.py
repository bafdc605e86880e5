"""Objective values and comparisons that respect the measurement spread."""

from __future__ import annotations

import math
import statistics

from moetui.runtime.bench import BenchResult

MIN_GAIN = 0.01  # a gain under 1% is never worth a change, however tight the spread
SECONDARY_GAIN = 0.03  # a tie on the objective is broken by the other figure only when it moves > 3%
SMALL_GAIN = 0.05  # an objective gain below 5% ...
BIG_LOSS = 0.10  # ... never pays for more than a 10% loss on the other figure


def score(bench: BenchResult, objective: str, n_prompt: int, n_gen: int) -> float | None:
    pp, tg = bench.pp_median, bench.tg_median
    if objective == "decode":
        return tg
    if objective == "prefill":
        return pp
    if not pp or not tg:
        return None
    # balanced: tokens per second over one request of n_prompt + n_gen tokens
    return (n_prompt + n_gen) / (n_prompt / pp + n_gen / tg)


def robust_spread(xs: list[float]) -> float:
    """A standard deviation that one outlier cannot blow up: 1.4826 x the median absolute deviation.
    (On a shared machine one repetition in five can stall for another process; the stdev then says more
    about that stall than about the config.)"""
    if len(xs) < 2:
        return 0.0
    med = statistics.median(xs)
    return 1.4826 * statistics.median(abs(x - med) for x in xs)


def spread(bench: BenchResult, objective: str, n_prompt: int, n_gen: int) -> float:
    """The spread (robust standard deviation) of the objective value, tok/s."""
    pp, tg = bench.pp_median or 0.0, bench.tg_median or 0.0
    sp, st = robust_spread(bench.pp_tok_s), robust_spread(bench.tg_tok_s)
    if objective == "decode":
        return st
    if objective == "prefill":
        return sp
    s = score(bench, objective, n_prompt, n_gen) or 0.0
    rel = math.hypot(sp / pp if pp else 0.0, st / tg if tg else 0.0)
    return s * rel


def relative_spread(bench: BenchResult, objective: str, n_prompt: int, n_gen: int) -> float:
    s = score(bench, objective, n_prompt, n_gen)
    return spread(bench, objective, n_prompt, n_gen) / s if s else 1.0


def _clearly_above(a: float, sa: float, b: float, sb: float, floor: float) -> bool:
    return a > b + max(sa, sb, floor * b)


def better(a: BenchResult, b: BenchResult, objective: str, n_prompt: int, n_gen: int) -> bool:
    """Is `a` better than `b` beyond the noise of either? Ties on the objective go to the other figure
    (decode -> prompt speed, prefill/balanced -> decode speed) when that one clearly moves."""
    sa, sb = score(a, objective, n_prompt, n_gen), score(b, objective, n_prompt, n_gen)
    if sa is None:
        return False
    if sb is None:
        return True
    na, nb = spread(a, objective, n_prompt, n_gen), spread(b, objective, n_prompt, n_gen)
    if _clearly_above(sa, na, sb, nb, MIN_GAIN):
        # a small gain on the objective does not buy a large loss on the other figure (seen on an H100:
        # ubatch 256 won decode by 1.5% at 32K context while prompt speed fell 43%)
        other = "prefill" if objective == "decode" else "decode"
        oa, ob = score(a, other, n_prompt, n_gen), score(b, other, n_prompt, n_gen)
        if sa < sb * (1 + SMALL_GAIN) and oa is not None and ob and oa < ob * (1 - BIG_LOSS):
            return False
        return True
    if _clearly_above(sb, nb, sa, na, MIN_GAIN):
        return False
    other = "prefill" if objective == "decode" else "decode"
    oa, ob = score(a, other, n_prompt, n_gen), score(b, other, n_prompt, n_gen)
    if oa is None or ob is None:
        return False
    return _clearly_above(oa, spread(a, other, n_prompt, n_gen), ob, spread(b, other, n_prompt, n_gen), SECONDARY_GAIN)


def not_worse(a: BenchResult, b: BenchResult, objective: str, n_prompt: int, n_gen: int) -> bool:
    """`a` is within the noise of `b` or above it (used to keep walking a placement line)."""
    sa, sb = score(a, objective, n_prompt, n_gen), score(b, objective, n_prompt, n_gen)
    if sa is None or sb is None:
        return sa is not None
    return not _clearly_above(sb, spread(b, objective, n_prompt, n_gen), sa, spread(a, objective, n_prompt, n_gen), MIN_GAIN)
