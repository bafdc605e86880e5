"""The objective a tune optimises, read from one measurement repetition by repetition.

"turn" (the default) is the user's wait: seconds for one turn of a workload (moetui.sizing.workload) at the
measured prompt and decode speeds; "decode" and "prefill" are tok/s; "balanced" is tok/s over one request of
the measured prompt and reply lengths. Samples come in the objective's own unit (seconds for "turn", lower is
better; tok/s otherwise); `score` is always a rate, higher is better, for tables and plots.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from moetui.runtime.bench import BenchResult
from moetui.sizing.workload import Workload


def robust_spread(xs: list[float]) -> float:
    """A standard deviation that one outlier cannot blow up: 1.4826 x the median absolute deviation.
    (On a shared machine one repetition in five can stall for another process; the stdev then says more
    about that stall than about the config.)"""
    if len(xs) < 2:
        return 0.0
    med = statistics.median(xs)
    return 1.4826 * statistics.median(abs(x - med) for x in xs)


@dataclass(frozen=True)
class Objective:
    name: str  # one of options.OBJECTIVES
    workload: Workload
    n_prompt: int  # the measured prompt length (balanced weighs by it)
    n_gen: int

    @property
    def lower_is_better(self) -> bool:
        return self.name == "turn"

    @property
    def unit(self) -> str:
        return "s/turn" if self.name == "turn" else "tok/s"

    def _one(self, pp: float | None, tg: float | None) -> float | None:
        if self.name == "decode":
            return tg
        if self.name == "prefill":
            return pp
        if self.name == "turn":
            s = self.workload.turn_seconds(pp, tg)
            return s if math.isfinite(s) else None
        if not pp or not tg:
            return None
        return (self.n_prompt + self.n_gen) / (self.n_prompt / pp + self.n_gen / tg)

    def samples(self, bench: BenchResult) -> list[float]:
        """The objective per repetition (prompt and decode repetitions paired in order)."""
        pp, tg = bench.pp_tok_s, bench.tg_tok_s
        if self.name == "decode" or (self.name == "turn" and not self.workload.prompt_tokens):
            pairs = [(None, t) for t in tg]
        elif self.name == "prefill" or (self.name == "turn" and not self.workload.reply_tokens):
            pairs = [(p, None) for p in pp]
        else:
            pairs = list(zip(pp, tg))
        return [v for v in (self._one(p, t) for p, t in pairs) if v is not None]

    def value(self, bench: BenchResult) -> float | None:
        """The objective at the measurement's median speeds, in its unit."""
        return self._one(bench.pp_median, bench.tg_median)

    def turn_seconds(self, bench: BenchResult) -> float | None:
        s = self.workload.turn_seconds(bench.pp_median, bench.tg_median)
        return s if math.isfinite(s) else None

    def score(self, bench: BenchResult) -> float | None:
        """A rate, higher is better: for "turn" the workload's tokens per second of its turn."""
        v = self.value(bench)
        if v is None or self.name != "turn":
            return v
        w = self.workload
        return (w.prompt_tokens + w.reply_tokens) / v if v > 0 else None
