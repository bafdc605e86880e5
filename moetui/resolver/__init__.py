"""Which config is in force for a model on a rig, and why: the one answer every command (`moetui plan`,
`run`, `export`, `tune`) and every screen (Home, Plan, Chat, Export, Best config) asks for.

In this order: a config picked by hand (a probe row in Tune, `--config FILE`); the profile a tune saved
for this rig, model and llama.cpp, where it answers the user's Settings (same workload, context at least
the one asked for — then run at the one asked for —, at least the VRAM margin, the same forced KV type,
ubatch, experts order, draft, RPC hosts: `Settings.reuse_problem`); else the sizing core's plan for the
Settings. Every plan made here carries the efficiency factors the latest tune on this rig measured, so
all of them predict and place alike. This module owns profile reuse (also for a tune: `tune`) and the
measured efficiency; a tune that may reuse a saved profile starts from moetui.resolver.tuning.

Its own floor, between the tuner/export and the CLI/UI. A plan-only path (plan, export, the Plan screen)
imports neither the tuner engine nor the model runtime (moetui.resolver.tuning does).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from moetui.config import RunConfig
from moetui.errors import MoetuiError
from moetui.hardware.fingerprint import fingerprint
from moetui.hardware.llama_build import llama_version
from moetui.hardware.rig import Rig
from moetui.model.info import ModelInfo
from moetui.sizing.plan import Plan, PlanOptions, gpu_usable, plan
from moetui.sizing.settings import Settings
from moetui.sizing.speed import EfficiencyFactors
from moetui.tuner.result import TuneResult
from moetui.tuner.store import ProfileStore


class ConfigSource(StrEnum):
    CHOSEN = "chosen"  # picked by hand: a probe row in Tune, `--config FILE`
    TUNED = "tuned"  # the profile a tune saved for this rig, model and llama.cpp, answering the settings
    PLANNED = "planned"  # the sizing core's plan, with this rig's measured efficiency when a tune left some
    DEFAULTS = "defaults"  # llama.cpp's own defaults: nothing planned (yet)


@dataclass(frozen=True)
class ActiveConfig:
    config: RunConfig
    source: ConfigSource
    reason: str  # one line, for a status bar or stderr

    def line(self) -> str:
        """"the tuned config (why)" as the CLI says it on stderr and the screens under their title."""
        return f"the {self.source} config: {self.reason}"


# ---- measured efficiency and the plan ----------------------------------------------------------------
def measured_efficiency(rig: Rig, store: ProfileStore | None = None) -> EfficiencyFactors | None:
    """This rig's measured efficiency factors, if a tune saved any; never raises (a plan without them
    just uses the defaults)."""
    if not rig.fingerprint:
        return None
    try:
        return (store or ProfileStore()).rig_efficiency(rig.fingerprint)
    except (OSError, MoetuiError):
        return None


def plan_options_for(rig: Rig, settings: Settings, model_path: str | None = None, draft: ModelInfo | None = None,
                     store: ProfileStore | None = None) -> PlanOptions:
    """The sizing core's options for the settings, with this rig's measured efficiency."""
    return PlanOptions.for_settings(settings, model_path=model_path, draft=draft,
                                    efficiency=measured_efficiency(rig, store))


def plan_for(info: ModelInfo, rig: Rig, settings: Settings, model_path: str | None = None,
             draft: ModelInfo | None = None, store: ProfileStore | None = None) -> Plan:
    """The plan for the settings on this rig, always with what a tune measured on it."""
    return plan(info, rig, plan_options_for(rig, settings, model_path, draft, store))


# ---- saved profiles ------------------------------------------------------------------------------------
def profile_problem(saved: TuneResult, settings: Settings, rig: Rig, min_ctx: int | None = None,
                    objective: str | None = None) -> str | None:
    """Why a saved profile does not answer these settings (None: it does). min_ctx: the context asked for
    (default the settings'; else any); objective: a tune's (None: a run takes whatever it was tuned for)."""
    ctx = min_ctx if min_ctx is not None else (settings.n_ctx or 0)
    return saved.reuse_problem(objective or saved.objective, settings, ctx, gpu_usable(rig))


def saved_profile(rig: Rig, model_identity: str, model_path: str | None = None,
                  store: ProfileStore | None = None) -> TuneResult | None:
    """The profile a tune saved for this rig, model and llama.cpp version, whatever it was tuned for;
    its config names `model_path` (the same model may have moved). Raises on a store it cannot read."""
    saved = (store or ProfileStore()).get(rig.fingerprint or fingerprint(rig), model_identity, llama_version(rig))
    if saved is not None and model_path and saved.best.config.model_path != model_path:
        saved.best.config = saved.best.config.replace(model_path=model_path)
    return saved


# ---- the answer ------------------------------------------------------------------------------------------
def from_plan(planned: Plan, why_not_tuned: str | None = None) -> ActiveConfig:
    measured = planned.efficiency.source != "defaults"
    reason = "the plan for this rig" + (f", with the efficiency a tune measured ({planned.efficiency.source})"
                                        if measured else "")
    if why_not_tuned:
        reason += f" (the tuned profile is not used: {why_not_tuned})"
    return ActiveConfig(planned.config, ConfigSource.PLANNED, reason)


def from_profile(tuned: TuneResult, settings: Settings | None = None) -> ActiveConfig:
    """The tuned winner, run at the context the settings ask for (a profile tuned at a larger one fits)."""
    cfg, reason = tuned.best.config, "the profile tuned for this rig (measured beats predicted)"
    if settings is not None and settings.n_ctx and cfg.n_ctx != settings.n_ctx:
        reason += f", at the context asked for ({settings.n_ctx}; tuned at {cfg.n_ctx})"
        cfg = cfg.replace(n_ctx=settings.n_ctx)
    return ActiveConfig(cfg, ConfigSource.TUNED, reason)


def choose(*, chosen: RunConfig | None = None, tuned: TuneResult | None = None, planned: Plan | None = None,
           settings: Settings | None = None, rig: Rig | None = None,
           defaults_for: str | None = None) -> ActiveConfig | None:
    """Which config is in force: chosen, else tuned where it answers the settings (checked when settings
    and rig are given), else planned; else llama.cpp's defaults for the model file `defaults_for` (when it
    exists); else None."""
    if chosen is not None:
        return ActiveConfig(chosen, ConfigSource.CHOSEN, "the config picked by hand")
    why_not = None
    if tuned is not None and settings is not None and rig is not None:
        why_not = profile_problem(tuned, settings, rig)  # a context asked for must be met; none asked: any
    if tuned is not None and why_not is None:
        return from_profile(tuned, settings)
    if planned is not None:
        return from_plan(planned, why_not)
    if defaults_for and Path(defaults_for).is_file():
        return ActiveConfig(RunConfig(model_path=defaults_for), ConfigSource.DEFAULTS,
                            "no plan yet: llama.cpp's defaults")
    return None


def resolve(model: str, settings: Settings, rig: Rig, *, use_tuned: bool = True, config_file: str | None = None,
            draft: ModelInfo | None = None, store: ProfileStore | None = None) -> ActiveConfig:
    """For the command line: `--config FILE` (MODEL names the file), else the tuned profile of MODEL (a
    local GGUF) on `rig` where it answers the settings, else the plan for the settings. A .gguf path that
    does not exist yet (about to be downloaded) gets llama.cpp's defaults at the context asked for."""
    from moetui.hub.resolve import resolve_model  # gguf and the hub client: only when it runs

    if config_file:
        cfg = RunConfig.load(config_file, model_path=model)  # MODEL overrides the file's model_path
        return ActiveConfig(cfg.replace(model_path=model), ConfigSource.CHOSEN, f"the config file {config_file}")
    if model.lower().endswith(".gguf") and not Path(model).expanduser().exists():
        return ActiveConfig(RunConfig(model_path=model, n_ctx=settings.n_ctx or RunConfig.n_ctx),
                            ConfigSource.DEFAULTS, f"{model} is not there yet: llama.cpp's defaults")
    info = resolve_model(model)
    planned = plan_for(info, rig, settings, model, draft, store)
    tuned = None
    if use_tuned and Path(model).expanduser().is_file():
        tuned = saved_profile(rig, info.identity, model, store)
    return choose(tuned=tuned, planned=planned, settings=settings, rig=rig) or from_plan(planned)
