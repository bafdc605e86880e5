"""A tune that may answer from a saved profile: the tuner engine and the model runtime, loaded only by
those who tune (`moetui tune`, the Tune and Best screens), never by a plan-only path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from moetui.hardware.rig import Rig
from moetui.resolver import measured_efficiency, profile_problem
from moetui.tuner.engine import Tuner
from moetui.tuner.events import TuneFinished, TuneProgress
from moetui.tuner.options import TuneOptions
from moetui.tuner.result import TuneResult
from moetui.tuner.store import ProfileStore


def tune(model_path: str, rig: Rig, options: TuneOptions | None = None,
         on_event: Callable[[Any], None] | None = None, cancel: threading.Event | None = None,
         store: ProfileStore | None = None) -> TuneResult:
    """Tune MODEL on this rig for options.settings, or return the saved profile at once (from_cache=True)
    unless options.retune. A saved profile is reused only when it was tuned for the same objective and
    its settings answer these (profile_problem); one a cancelled tune saved is not final."""
    options = options or TuneOptions()
    options.validate()
    store = store or ProfileStore()
    tuner = Tuner(model_path, rig, options, store=store, efficiency=measured_efficiency(rig, store))
    if not options.retune:
        saved = store.get(tuner.rig_fingerprint, tuner.model_id, tuner.llama_version)
        why = (profile_problem(saved, options.settings, rig, tuner.min_ctx(), options.objective)
               if saved is not None else "no saved profile")
        if saved is not None and why is None:
            saved.from_cache = True
            saved.best.config = saved.best.config.replace(model_path=str(model_path))
            if on_event:
                on_event(TuneFinished(saved))
            return saved
        if saved is not None and on_event:
            on_event(TuneProgress(0.0, 0.0, None, f"{why}: tuning again"))
    return tuner.run(on_event, cancel)
