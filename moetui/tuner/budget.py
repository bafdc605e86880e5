"""The smallest tune budget that can work for a model on a rig, checked before a tune starts: a budget too
small to measure even the plan used to run to its end and say "no configuration could be measured" (budget
1 s, or 20 s for Gemma 3 270M on a 2-core machine), without saying what budget would do."""

from __future__ import annotations

import math
import os
from typing import Any

from moetui.errors import ConfigError
from moetui.tuner.options import MIN_PROMPT, MIN_REPS, TuneOptions

WORKER_START_S = 3.0  # a model worker's start before it reads the model (a Python child importing llama_cpp)
LOAD_BPS = 2 * 2**30  # the model's bytes read at load, at least this slowly (a disk, not the page cache)
# How much faster than predicted a rig may measure: the floor refuses only a budget that cannot work even
# then. Untuned predictions can be far off (Gemma 3 270M's prompt on a 2-core machine: ~30 tok/s predicted,
# 388 measured); once a tune has refit this rig's factors they are close.
PREDICTION_SLACK = {"defaults": 4.0, "measured": 1.5}


def min_budget_s(model_path: str, plan: Any, options: TuneOptions) -> int:
    """Seconds to start a worker, load the model and run MIN_REPS repetitions of the measured prompt and
    reply at the plan's predicted speeds, run PREDICTION_SLACK times faster: below this nothing is measured."""
    w = options.workload
    n_prompt = options.n_prompt or min(w.prompt_tokens or MIN_PROMPT, MIN_PROMPT)
    per_rep = ((n_prompt / plan.prompt_tps if plan.prompt_tps else 0.0)
               + (options.n_gen / plan.decode_tps if plan.decode_tps else 0.0))
    load = os.path.getsize(model_path) / LOAD_BPS if os.path.exists(model_path) else 0.0
    slack = PREDICTION_SLACK["defaults" if plan.efficiency.source == "defaults" else "measured"]
    return max(1, math.ceil(WORKER_START_S + load + MIN_REPS * per_rep / slack))


def check_budget(model_path: str, plan: Any, options: TuneOptions) -> None:
    """ConfigError naming the smallest budget that can work, when options.budget_s is below it."""
    need = min_budget_s(model_path, plan, options)
    if options.budget_s < need:
        raise ConfigError(f"a {options.budget_s:g} s budget cannot measure even the plan of "
                          f"{os.path.basename(model_path)} on this rig: starting it, loading it and {MIN_REPS} "
                          f"repetitions take at least {need} s even if it runs faster than predicted; give a "
                          f"budget of at least {need} s")
