"""Every speed on screen says what it is: predicted from the default efficiency factors, predicted with the
factors a tune measured on this rig, or measured (which config, when). Home, Plan and Best config word
their figures with these two helpers, so the three say it alike."""

from __future__ import annotations

import time
from typing import Any

from moetui.hardware.bandwidth import ago
from moetui.ui.widgets.format import tps


def factors_words(plan: Any) -> str:
    """'(default factors)' or '(factors a tune measured)': what a plan's predicted tok/s rest on."""
    return "(default factors)" if plan.efficiency.source == "defaults" else "(factors a tune measured)"


def measured_words(tuned: Any, config: Any) -> str:
    """': measured 41.2 tok/s decode, 388 tok/s prompt, 5 min ago' for the tuned config in use: what was
    measured, not predicted, and when (read from the same clock as every other "ago"); '' when `config` is
    not the tune's winner (then nothing was measured for it)."""
    best = getattr(tuned, "best", None)
    if best is None or getattr(best, "tg", None) is None or best.config.replace(model_path="") != \
            config.replace(model_path=""):
        return ""
    when = getattr(tuned, "created", None)
    return (f": measured {tps(best.tg)} tok/s decode" + (f", {tps(best.pp)} tok/s prompt" if best.pp else "")
            + (f", {ago(time.time() - when)}" if when else ""))
