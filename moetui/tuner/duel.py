"""A candidate against the config it would replace, measured in the same conditions: interleaved turns
(B A A B B A ...), so a slow minute on a shared machine hits both alike and a linear drift cancels across
each mirrored pair of rounds. Rounds grow, one at a time up to a bound, only while the two intervals
overlap (evidence.judge); a tie keeps the simpler config. Every comparison returns its evidence.

Why side by side: probes run minutes apart, and on a shared machine the speed drifts more between them
than most settings move it (tuning/results/bench_tuner.md: one config's decode varied 93-114 tok/s; on an
H200 one config read 83.2 and later 75.8 tok/s), so figures taken at different times cannot be compared.
"""

from __future__ import annotations

import math
from typing import Protocol

from moetui.config import RunConfig
from moetui.errors import ErrorKind
from moetui.tuner.evidence import Decision, Side, Verdict, judge
from moetui.tuner.options import MIN_REPS
from moetui.tuner.probe import Probe, ProbeStatus
from moetui.tuner.scoring import Objective

FIRST_REPS = 4  # figures a side before a verdict: with three, disjoint ranges happen by chance one time in ten
# where each turn is a block (the interval then spans block medians, evidence.Side): with two blocks a side
# two equal configs come out disjoint one time in three, with three one time in ten
FIRST_BLOCKS = 3
# a comparison the budget cut still decides if each side has this many turns (blocks) measured beside the
# other and the candidate is clear; with fewer, a lone figure could be a slow moment
MIN_SIDE_BY_SIDE = 2


class Runner(Protocol):
    """What a comparison needs from whoever runs the measurements (the real ProbeRunner, or a fake)."""

    def turn(self, probe: Probe, reps: int, *, generate: bool = False, record: bool = True) -> bool: ...

    def cheap_switch(self, a: RunConfig, b: RunConfig) -> bool: ...

    def out_of_budget(self) -> bool: ...


def order(n: int, rounds: int) -> list[int]:
    """Turn order over n configs: forward, then mirrored, and so on (0 1 1 0 0 1 ...)."""
    out: list[int] = []
    for r in range(rounds):
        out += list(range(n)) if r % 2 == 0 else list(reversed(range(n)))
    return out


def _runs(turns: list[int]) -> list[tuple[int, int]]:
    """Consecutive turns of one config merged into one measurement: [0,1,1,0] -> [(0,1),(1,2),(0,1)]."""
    out: list[tuple[int, int]] = []
    for t in turns:
        if out and out[-1][0] == t:
            out[-1] = (t, out[-1][1] + 1)
        else:
            out.append((t, 1))
    return out


def duel(runner: Runner, incumbent: Probe, candidate: Probe, objective: Objective, *, dimension: str,
         max_rounds: int, candidate_simpler: bool, generate: bool = False, record_incumbent: bool = False) -> Decision:
    """Measure two running probes side by side until they separate, tie, or the rounds run out. The probes'
    benches receive the figures of this comparison. A failure of the candidate is recorded for the rig (it
    is new); the incumbent's is not unless `record_incumbent` (it ran before: the moment is to blame)."""
    both = (candidate, incumbent)  # the candidate first: if it fails, no time went into the incumbent
    # where every switch reloads the weights (a GPU holds one copy), each turn measures a block of reps
    per_turn = 1 if runner.cheap_switch(incumbent.config, candidate.config) else MIN_REPS
    first = FIRST_REPS if per_turn == 1 else FIRST_BLOCKS
    most = max(first, math.ceil(max_rounds / per_turn))
    rounds, verdict = 0, None
    while verdict is None:
        add = first if rounds == 0 else 1
        turns = order(2, rounds + add)[2 * rounds:]
        for who, n in _runs(turns):
            p = both[who]
            runner.turn(p, n * per_turn, generate=generate, record=(p is candidate) or record_incumbent)
            if p.status != ProbeStatus.RUNNING:
                break
        rounds += add
        if any(p.status != ProbeStatus.RUNNING for p in both):
            break
        a, b = _sides(incumbent, candidate, objective, per_turn)
        verdict = judge(a, b, objective.lower_is_better, last_round=rounds >= most or runner.out_of_budget())
    a, b = _sides(incumbent, candidate, objective, per_turn)
    if candidate.status != ProbeStatus.RUNNING:
        why = candidate.error or "it did not run"
        return Decision(dimension, objective.name, objective.unit, a, b, rounds, Verdict.FAILED, "incumbent", why)
    if (incumbent.status != ProbeStatus.RUNNING and incumbent.error_kind == ErrorKind.BUDGET.value
            and min(a.reps, b.reps) >= max(MIN_SIDE_BY_SIDE * per_turn, MIN_REPS)
            and judge(a, b, objective.lower_is_better, last_round=True) == Verdict.BETTER):
        # the budget cut the incumbent's last turn, but both were measured side by side before it and the
        # candidate is clear (seen on an H200 at 12 GiB: one more layer's experts on the GPU measured 3.99
        # against 4.34 s/turn in 3 and 2 blocks, and was thrown away for the cut)
        return Decision(dimension, objective.name, objective.unit, a, b, rounds, Verdict.BETTER, "candidate",
                        "its interval is clear of the incumbent's in the turns measured side by side before the "
                        "time budget cut the incumbent's last one")
    if incumbent.status != ProbeStatus.RUNNING and incumbent.error_kind == ErrorKind.BUDGET.value:
        # the candidate's figures stand alone, taken at another moment than the incumbent's: not a comparison
        # (seen on an H200 capped at 8 GiB: the plan's reload was cut by the budget and a slower config won)
        candidate.status, candidate.error_kind = ProbeStatus.SKIPPED, ErrorKind.BUDGET.value
        candidate.error = "not compared: the time budget ran out before the incumbent was measured beside it"
        return Decision(dimension, objective.name, objective.unit, a, b, rounds, Verdict.UNDECIDED, "incumbent",
                        "the time budget ran out before the incumbent was measured beside it")
    if incumbent.status != ProbeStatus.RUNNING:
        keep = "candidate" if b.reps >= MIN_REPS else "incumbent"
        if keep == "incumbent":  # not the candidate's fault: it is not remembered as failed
            candidate.status, candidate.error_kind = ProbeStatus.SKIPPED, "interrupted"
            candidate.error = f"not compared: the incumbent failed ({incumbent.error})"
        return Decision(dimension, objective.name, objective.unit, a, b, rounds,
                        Verdict.BETTER if keep == "candidate" else Verdict.TIE, keep,
                        f"the incumbent failed in this comparison ({incumbent.error})")
    assert verdict is not None
    if verdict == Verdict.BETTER:
        keep, why = "candidate", "its interval is clear of the incumbent's"
    elif verdict == Verdict.WORSE:
        keep, why = "incumbent", "its interval is clear of the incumbent's, on the wrong side"
    else:
        keep = "candidate" if candidate_simpler else "incumbent"
        why = ("inside the noise: the simpler config is kept" if candidate_simpler
               else "inside the noise: the incumbent is kept (no simpler)")
    return Decision(dimension, objective.name, objective.unit, a, b, rounds, verdict, keep, why)


def _sides(incumbent: Probe, candidate: Probe, objective: Objective, block: int) -> tuple[Side, Side]:
    def side(p: Probe) -> Side:
        return Side.of(p.index, p.label, objective.samples(p.bench) if p.bench else [], block)

    return side(incumbent), side(candidate)
