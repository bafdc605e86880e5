"""The auto-tuner: measure candidate configs live, keep the fastest for the user's workload, remember it per
rig + model + llama.cpp.

    from moetui.tuner import Tuner, TuneOptions
    result = Tuner(model_path, rig, TuneOptions(budget_s=120, workload=parse_workload("chat"))).run(on_event)
    result.best.config, result.best.bench, result.best.turn_s, result.decisions

Modules: runner (workers, benches, the clock, the probe life-cycle), duel and evidence (side-by-side
comparisons and what they saw), search (dimensions and walks), engine (the tune end to end), store.
"""

from moetui.tuner.engine import TuneFailed, Tuner, latest_config, tune
from moetui.tuner.events import (
    ProbeFinished,
    ProbesCompared,
    ProbeStarted,
    TuneEvent,
    TuneFinished,
    TuneProgress,
)
from moetui.tuner.evidence import Decision, Verdict
from moetui.tuner.options import DIMENSIONS, OBJECTIVES, TuneOptions
from moetui.tuner.probe import Probe, ProbeRole, ProbeStatus
from moetui.tuner.result import TuneResult
from moetui.tuner.store import ProfileStore

__all__ = [
    "DIMENSIONS", "OBJECTIVES", "Decision", "Probe", "ProbeFinished", "ProbeRole", "ProbeStarted", "ProbeStatus",
    "ProbesCompared", "ProfileStore", "TuneEvent", "TuneFailed", "TuneFinished", "TuneOptions", "TuneProgress",
    "TuneResult", "Tuner", "Verdict", "latest_config", "tune",
]
