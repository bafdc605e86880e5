"""What one comparison saw and decided: both sides' medians, spreads and repetitions, the verdict and why.

The rule (pure, so tests can drive it with made-up figures): each side's interval is its median +- t robust
standard errors (with a floor for a spread of zero). Disjoint intervals decide, if the gap is worth a change
(MIN_GAIN); overlapping ones ask for another round, unless both lie inside the MIN_GAIN band around each
other (a tie more rounds cannot break) or the rounds are spent (a tie). A tie keeps the simpler config.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


# interval half-width in standard errors of the median: Student's t (two-sided 95%) for n - 1 degrees of
# freedom, since three to eight figures are all a comparison has (two disjoint 95% intervals are a
# stricter test than 95%: it may look again after every round and still rarely errs)
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}
Z_LARGE = 2.0
TIE_SPAN = 0.02  # both intervals inside a band this wide (relative): more rounds cannot make it a change
MIN_GAIN = 0.01  # a gain under 1% is never worth a change, however tight the spread
FLOOR = 0.002  # the least half-width, relative: three equal figures do not make a certainty


class Verdict(StrEnum):
    BETTER = "better"  # the candidate is better beyond the noise
    WORSE = "worse"
    TIE = "tie"  # inside the noise: the simpler config is kept
    FAILED = "failed"  # the candidate did not run


@dataclass
class Side:
    index: int  # the probe's index (-1 for the incumbent's re-measurement, which is no probe of its own)
    label: str
    median: float | None
    # standard deviation of the samples: not the MAD, which on three to eight figures too often comes out
    # near zero and turns noise into a verdict; a stalled repetition widens the interval (more rounds)
    spread: float
    reps: int
    low: float | None  # the interval
    high: float | None

    @classmethod
    def of(cls, index: int, label: str, xs: list[float]) -> Side:
        if not xs:
            return cls(index, label, None, 0.0, 0, None, None)
        med, sd = statistics.median(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0
        z = _T95.get(len(xs) - 1, Z_LARGE)
        half = max(z * 1.253 * sd / math.sqrt(len(xs)), FLOOR * abs(med))  # 1.253: the median's standard error
        return cls(index, label, med, sd, len(xs), med - half, med + half)


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
            return f"{s.label} {s.median:.3g} ± {s.spread:.2g} {self.unit} ({s.reps}x)"

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
