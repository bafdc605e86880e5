"""The final round: the search's winner measured again side by side with what it must beat.

Why: probes run minutes apart, and on a shared machine the speed drifts more between them than most
settings move it (tuning/results/bench_tuner.md: one config's decode varied 93-114 tok/s). A winner picked
from such probes can be a config that merely ran in a quiet minute -- the recorded CPU benchmark handed
back `-lm none`, 0.91x llama.cpp's defaults once both were measured together. So before the tune answers,
the winner, the start it must beat (llama.cpp's defaults, or the plan where those do not fit) and the
runner-up whose spread overlaps the winner's are measured in interleaved turns (A B C C B A A B C ...):
a slow minute then hits all of them alike, and a linear drift cancels across each mirrored pair of rounds.

This module holds the pure parts (who takes part, in what order, who wins); the engine owns the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from moetui.tuner.probe import Probe

Compare = Callable[[Probe, Probe], bool]

# probes whose figures the final may compare: bench-timed ones (draft probes and their generation-timed
# reference are measured another way, so they neither enter nor are re-measured here)
COMPARABLE_ROLES = ("plan", "baseline", "search", "recheck")


def _same_config(a: Probe, b: Probe, key: Callable[[Probe], str]) -> bool:
    return key(a) == key(b)


def contenders(best: Probe, start: Probe | None, probes: Sequence[Probe], overlaps: Compare,
               key: Callable[[Probe], str]) -> list[Probe]:
    """The probes to measure side by side: the winner first; the start it must never lose to (always,
    when it ran and is another config); the best other probe when its spread overlaps the winner's
    (overlaps(runner_up, best): not below it beyond the noise). Distinct configs only."""
    out = [best]
    if start is not None and start.ok and not _same_config(start, best, key):
        out.append(start)
    others = [p for p in probes if p.ok and p.role in COMPARABLE_ROLES and p.score is not None
              and p.config.draft is None and not any(_same_config(p, c, key) for c in out)]
    runner_up = max(others, key=lambda p: p.score or 0.0, default=None)
    if runner_up is not None and overlaps(runner_up, best):
        out.append(runner_up)
    return out


def order(n: int, rounds: int) -> list[int]:
    """Turn order over n contenders: forward, then mirrored, and so on (0 1 2 2 1 0 0 1 2 ...)."""
    out: list[int] = []
    for r in range(rounds):
        out += list(range(n)) if r % 2 == 0 else list(reversed(range(n)))
    return out


def objective_median(p: Probe) -> float:
    return p.score if p.score is not None else float("-inf")


def pick(finals: Sequence[Probe], better: Compare) -> Probe:
    """The contender with the highest median of the objective -- unless another one is better by the usual
    rule (scoring.better: within the noise on the objective, clearly ahead on the other figure). The
    first contender (the search's winner) wins exact ties."""
    ok = [p for p in finals if p.ok]
    if not ok:
        raise ValueError("no contender was measured")
    top = max(ok, key=objective_median)  # max keeps the first of equals
    for p in ok:
        if p is not top and better(p, top):
            top = p
    return top
