"""The auto-tuner: measure candidate configs live, keep the fastest, remember it per rig + model + llama.cpp.

    from moetui.tuner import Tuner, TuneOptions
    result = Tuner(model_path, rig, TuneOptions(budget_s=120)).run(on_event)
    result.best.config, result.best.bench
"""

from moetui.tuner.engine import TuneFailed, Tuner, latest_config, tune
from moetui.tuner.events import (
    ProbeFinished,
    ProbeStarted,
    TuneEvent,
    TuneFinished,
    TuneProgress,
)
from moetui.tuner.options import DIMENSIONS, OBJECTIVES, TuneOptions
from moetui.tuner.probe import Probe
from moetui.tuner.result import TuneResult
from moetui.tuner.store import ProfileStore

__all__ = [
    "DIMENSIONS", "OBJECTIVES", "Probe", "ProbeFinished", "ProbeStarted", "ProfileStore", "TuneEvent", "TuneFailed",
    "TuneFinished", "TuneOptions", "TuneProgress", "TuneResult", "Tuner", "latest_config", "tune",
]
