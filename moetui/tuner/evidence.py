"""What one comparison saw and decided: both sides' medians, spreads and repetitions, the verdict and why.

The rule (pure, so tests can drive it with made-up figures): each side's interval is a distribution-free one
for its median (order statistics, median_interval; with a small floor). Where a side was measured in blocks
of repetitions (a GPU that reloads the weights at every switch), the interval is taken over the blocks'
medians, not the repetitions: repetitions back to back share the moment's slowness, so a slow half-minute
that hit one block would otherwise look like six independent figures against the config. Disjoint
intervals decide, if the gap is worth a change (MIN_GAIN); overlapping ones ask for another round, unless both lie inside the MIN_GAIN band around each
other (a tie more rounds cannot break) or the rounds are spent (a tie). A tie keeps the simpler config.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from moetui.tuner.scoring import robust_spread


TIE_SPAN = 0.02  # both intervals inside a band this wide (relative): more rounds cannot make it a change
MIN_GAIN = 0.01  # a gain under 1% is never worth a change, however tight the spread
FLOOR = 0.002  # the least half-width, relative: three equal figures do not make a certainty


class Verdict(StrEnum):
    BETTER = "better"  # the candidate is better beyond the noise
    WORSE = "worse"
    TIE = "tie"  # inside the noise: the simpler config is kept
    FAILED = "failed"  # the candidate did not run
    UNDECIDED = "not compared"  # the time ran out before the incumbent was measured beside it: it stays


@dataclass
class Side:
    index: int  # the probe's index (-1 for the incumbent's re-measurement, which is no probe of its own)
    label: str
    median: float | None
    spread: float  # robust standard deviation of the samples (scoring.robust_spread), for reading
    reps: int
    low: float | None  # the interval
    high: float | None
    block: int = 1  # repetitions measured back to back per figure the interval is taken over

    @classmethod
    def of(cls, index: int, label: str, xs: list[float], block: int = 1) -> Side:
        if not xs:
            return cls(index, label, None, 0.0, 0, None, None, block)
        med = statistics.median(xs)
        figures = xs if block <= 1 else [statistics.median(xs[i:i + block]) for i in range(0, len(xs), block)]
        low, high = median_interval(figures)
        floor = FLOOR * abs(med)
        return cls(index, label, med, robust_spread(xs), len(xs), min(low, med - floor), max(high, med + floor),
                   block)


def median_interval(xs: list[float]) -> tuple[float, float]:
    """A distribution-free interval for the median: the k-th smallest and k-th largest figure, k growing
    with n (1 up to six figures, 2 up to nine, then n // 4). A stalled repetition (another process took
    the cores) only widens it while there are few figures, and is ignored once there are enough; no
    normal-noise assumption, which one stall breaks."""
    ys = sorted(xs)
    n = len(ys)
    k = 1 if n <= 6 else (2 if n <= 9 else n // 4)
    return ys[k - 1], ys[n - k]


def judge(incumbent: Side, candidate: Side, lower_is_better: bool, last_round: bool) -> Verdict | None:
    """The verdict on the candidate, or None while more rounds could tell."""
    if candidate.median is None:
        return Verdict.FAILED
    if incumbent.median is None:
        return Verdict.BETTER
    sign = -1.0 if lower_is_better else 1.0
    gain = sign * (candidate.median - incumbent.median) / abs(incumbent.median or 1.0)
    assert incumbent.low is not None and incumbent.high is not None
    assert candidate.low is not None and candidate.high is not None
    apart = candidate.low > incumbent.high or candidate.high < incumbent.low
    if apart and abs(gain) >= MIN_GAIN:
        return Verdict.BETTER if gain > 0 else Verdict.WORSE
    widest = max(candidate.high, incumbent.high) - min(candidate.low, incumbent.low)
    if apart or last_round or widest <= TIE_SPAN * abs(incumbent.median):
        return Verdict.TIE  # apart by less than a change is worth, or too close for more rounds to split
    return None


@dataclass
class Decision:
    """One comparison of a candidate with the config it would replace, measured side by side."""

    dimension: str  # what was searched ("defaults", "threads", "placement", ..., "final")
    objective: str
    unit: str
    incumbent: Side
    candidate: Side
    rounds: int  # interleaved rounds run (each side measured once a round)
    verdict: Verdict
    kept: str  # "candidate" | "incumbent"
    reason: str

    def describe(self) -> str:
        def fig(s: Side) -> str:
            if s.median is None:
                return f"{s.label}: not measured"
            blocks = f" in {-(-s.reps // s.block)} blocks" if s.block > 1 else ""
            return f"{s.label} {s.median:.3g} ± {s.spread:.2g} {self.unit} ({s.reps}x{blocks})"

        return f"{self.dimension}: {fig(self.candidate)} vs {fig(self.incumbent)}: {self.verdict}, {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = str(self.verdict)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(dimension=str(d["dimension"]), objective=str(d["objective"]), unit=str(d["unit"]),
                   incumbent=Side(**d["incumbent"]), candidate=Side(**d["candidate"]), rounds=int(d["rounds"]),
                   verdict=Verdict(d["verdict"]), kept=str(d["kept"]), reason=str(d["reason"]))
