"""The auto-tuner: measure candidate configs live, keep the fastest for the user's workload, remember it per
rig + model + llama.cpp.

    from moetui.tuner.engine import Tuner
    result = Tuner(model_path, rig, TuneOptions(Settings(workload=parse_workload("chat")), budget_s=120)).run(on_event)
    result.best.config, result.best.bench, result.best.turn_s, result.decisions

Modules: runner (workers, benches, the clock, the probe life-cycle), duel and evidence (side-by-side
comparisons and what they saw), search (dimensions and walks), engine (the tune end to end), store.
This package's own names are the light ones (options, results, the store): importing it loads neither the
engine nor the runtime, so a plan-only path (moetui.resolver) can read profiles without them. A tune
that may reuse a saved profile starts from moetui.resolver.tune.
"""

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
    "ProbesCompared", "ProfileStore", "TuneEvent", "TuneFinished", "TuneOptions", "TuneProgress",
    "TuneResult", "Verdict",
]
