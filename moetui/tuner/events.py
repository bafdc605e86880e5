"""Progress events the tuner sends to its caller (the TUI turns them into a progress bar, a plot and the
evidence of each comparison)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from moetui.tuner.probe import Probe

if TYPE_CHECKING:
    from moetui.tuner.evidence import Decision
    from moetui.tuner.result import TuneResult


@dataclass
class ProbeStarted:
    probe: Probe
    n_done: int
    eta_s: float | None


@dataclass
class ProbeFinished:
    probe: Probe
    best: Probe | None
    n_done: int
    eta_s: float | None
    elapsed_s: float


@dataclass
class ProbesCompared:
    """A candidate was measured side by side with the incumbent: what each side measured and the verdict."""

    decision: Decision


@dataclass
class TuneProgress:
    fraction: float
    elapsed_s: float
    eta_s: float | None
    message: str


@dataclass
class TuneFinished:
    result: TuneResult


TuneEvent = ProbeStarted | ProbeFinished | ProbesCompared | TuneProgress | TuneFinished
