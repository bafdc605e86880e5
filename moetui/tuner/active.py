"""Which config is in force for a model on a rig: one answer for the CLI (`moetui run`, `moetui export`,
`moetui plan`) and the TUI (Plan, Chat, Export, Best config).

Three things answer it, in this order: a config picked by hand (a probe row in Tune, `--config FILE`),
the profile `moetui tune` saved for this rig, model and llama.cpp (measured beats predicted), and the
sizing core's plan. Every plan made here carries the efficiency factors the latest tune on this rig
measured, so the Plan screen, Best config, `moetui plan` and `moetui export` predict and place alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from moetui.config import RunConfig
from moetui.hardware import detect_rig
from moetui.hardware.fingerprint import fingerprint
from moetui.hardware.rig import Rig
from moetui.hub.resolve import resolve_model
from moetui.model.info import ModelInfo
from moetui.sizing.plan import Plan, PlanOptions, plan
from moetui.tuner.engine import llama_version
from moetui.tuner.result import TuneResult
from moetui.tuner.store import ProfileStore, measured_efficiency


class ConfigSource(StrEnum):
    CHOSEN = "chosen"  # picked by hand: a probe row in Tune, `--config FILE`
    TUNED = "tuned"  # the profile a tune saved for this rig, model and llama.cpp
    PLANNED = "planned"  # the sizing core's plan, with this rig's measured efficiency when a tune left some
    DEFAULTS = "defaults"  # llama.cpp's own defaults: nothing planned (yet)


@dataclass(frozen=True)
class ActiveConfig:
    config: RunConfig
    source: ConfigSource
    reason: str  # one line, for a status bar or stderr


def plan_options_for(rig: Rig, options: PlanOptions | None = None, model_path: str | None = None,
                     store: ProfileStore | None = None) -> PlanOptions:
    """A copy of `options` (default ones if None) with this rig's measured efficiency factors, if a tune
    saved any, and the model path the config should name."""
    o = replace(options) if options is not None else PlanOptions()
    if model_path is not None:
        o.model_path = model_path
    eff = measured_efficiency(rig, store)
    if eff is not None:
        o.efficiency = eff
    return o


def plan_for_rig(info: ModelInfo, rig: Rig, options: PlanOptions | None = None, model_path: str | None = None,
                 store: ProfileStore | None = None) -> Plan:
    """The sizing core's plan for this rig, always with what a tune measured on it."""
    return plan(info, rig, plan_options_for(rig, options, model_path, store))


def saved_profile(rig: Rig, model_identity: str, model_path: str | None = None,
                  store: ProfileStore | None = None) -> TuneResult | None:
    """The profile `moetui tune` saved for this rig, model and llama.cpp version; its config names
    `model_path` (the same model may have moved). Raises on a store it cannot read: callers decide."""
    saved = (store or ProfileStore()).get(rig.fingerprint or fingerprint(rig), model_identity, llama_version(rig))
    if saved is not None and model_path and saved.best.config.model_path != model_path:
        saved.best.config = saved.best.config.replace(model_path=model_path)
    return saved


def from_profile(tuned: TuneResult) -> ActiveConfig:
    return ActiveConfig(tuned.best.config, ConfigSource.TUNED, "the profile tuned for this rig (measured beats predicted)")


def from_plan(planned: Plan) -> ActiveConfig:
    measured = planned.efficiency.source != "defaults"
    return ActiveConfig(planned.config, ConfigSource.PLANNED, "the plan for this rig" + (
        f", with the efficiency a tune measured ({planned.efficiency.source})" if measured else ""))


def choose(*, chosen: RunConfig | None = None, tuned: TuneResult | None = None, planned: Plan | None = None,
           defaults_for: str | None = None) -> ActiveConfig | None:
    """Which config is in force: chosen, else tuned, else planned; else llama.cpp's defaults for the
    model file `defaults_for` (when it exists); else None."""
    if chosen is not None:
        return ActiveConfig(chosen, ConfigSource.CHOSEN, "the config picked by hand")
    if tuned is not None:
        return from_profile(tuned)
    if planned is not None:
        return from_plan(planned)
    if defaults_for and Path(defaults_for).is_file():
        return ActiveConfig(RunConfig(model_path=defaults_for), ConfigSource.DEFAULTS,
                            "no plan yet: llama.cpp's defaults")
    return None


def active_for_model(model: str, rig: Rig | None = None, *, use_tuned: bool = True, options: PlanOptions | None = None,
                     store: ProfileStore | None = None) -> ActiveConfig:
    """For the command line: the tuned profile of MODEL (a local GGUF) on `rig` (default: this machine),
    else its plan. A .gguf path that does not exist yet (about to be downloaded) gets llama.cpp's
    defaults."""
    if model.lower().endswith(".gguf") and not Path(model).expanduser().exists():
        return ActiveConfig(RunConfig(model_path=model), ConfigSource.DEFAULTS,
                            f"{model} is not there yet: llama.cpp's defaults")
    info = resolve_model(model)
    rig = rig or detect_rig()
    if use_tuned and Path(model).expanduser().is_file():
        tuned = saved_profile(rig, info.identity, model, store)
        # a profile tuned for another number of parallel sequences (serving N slots) has the wrong KV size
        if tuned is not None and tuned.best.config.n_parallel == (options.n_parallel if options else 1):
            return from_profile(tuned)
    return from_plan(plan_for_rig(info, rig, options, model, store))
