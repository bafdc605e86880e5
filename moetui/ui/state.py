"""The app's shared state; screens read it through `app_state(self.app)` (one typed accessor) and post the
messages below to change it.

Messages bubble up to the App (attributes down, messages up): the App updates `AppState` and then calls
`refresh_from_state()` on every installed screen that defines it. Nothing here imports a heavy module at
runtime: the domain types are only needed by type checkers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.app import App
from textual.message import Message

from moetui.sizing.settings import Settings  # light: the user's settings, no gguf

if TYPE_CHECKING:  # annotations only: keeps `import moetui.ui.state` cheap and free of import cycles
    from moetui.config import RunConfig
    from moetui.hardware import Rig
    from moetui.model.info import ModelInfo
    from moetui.resolver import ActiveConfig
    from moetui.sizing.plan import Plan
    from moetui.tuner import TuneResult


@dataclass
class AppState:
    rig: Rig | None = None  # moetui.hardware.Rig (detected in a worker at startup)
    model_path: str | None = None  # selected model: a local GGUF path (or a hub ref before download)
    model_info: ModelInfo | None = None  # moetui.model.info.ModelInfo of the selection
    # what the user asked for (context, margin, workload, KV type, draft, ...): the Plan, Tune and Best
    # screens edit it (SettingsChanged); the plan, the tune, Chat and Export all use it as it is
    settings: Settings = field(default_factory=Settings)
    plan: Plan | None = None  # moetui.sizing.plan.Plan for the selection with the settings
    tuned: TuneResult | None = None  # moetui.tuner.TuneResult, when tuned (or loaded from the profile store)
    config: RunConfig | None = None  # what Chat/Export use: tuned.best.config, else plan.config
    # what the App's workers are doing or why they failed: the screens show it, only the App writes it
    detecting: bool = False  # the rig is being detected (Rig, Home and Best config wait for it)
    loading_model: str | None = None  # the path being inspected, until it is selected or fails
    model_error: str | None = None  # why the last model picked could not be used
    planning: bool = False  # a plan for the selection is being computed
    plan_error: str | None = None  # why the last plan failed (DoesNotFit ...), shown by Plan and Home

    def active(self, *, defaults: bool = False) -> ActiveConfig | None:
        """Which config is in force and why (moetui.resolver): chosen, tuned (where it answers the
        settings), planned. defaults: llama.cpp's own for a selected model file not planned yet (what Chat
        loads then)."""
        from moetui.resolver import choose  # gguf: `import moetui.ui.state` stays cheap

        tuned = self.tuned if self.tuned is not None and self.config is self.tuned.best.config else None
        return choose(chosen=None if tuned else self.config, tuned=tuned, planned=self.plan, settings=self.settings,
                      rig=self.rig, defaults_for=self.model_path if defaults else None)

    def active_config(self) -> RunConfig | None:
        active = self.active()
        return active.config if active else None


def app_state(app: App) -> AppState:
    """The app's AppState, typed (MoetuiApp.state); a bare one for a host app that has none (a test's or an
    embedding app: the screens then say what is missing)."""
    state = getattr(app, "state", None)
    if not isinstance(state, AppState):
        state = AppState()
        app.state = state  # type: ignore[attr-defined]  # the one place that gives a host app a state
    return state


class DownloadRequested(Message):
    """Download this hub model (REPO:QUANT) now, without asking: Chat shows the progress, then loads it."""

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref


class ModelSelected(Message):
    """A model was picked (Models screen, Best-config flow, command line). `info` None: inspect it."""

    def __init__(self, path: str, info: ModelInfo | None = None) -> None:
        super().__init__()
        self.path = path
        self.info = info


class PlanChanged(Message):
    """A new plan for the selection (settings changed, rig or model changed)."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan


class SettingsChanged(Message):
    """The user changed a setting (Plan's knobs, Tune's or Best's workload): the App stores the new Settings
    and plans the selection with them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings


class TuneCompleted(Message):
    """The tuner finished: the App sets state.tuned and state.config = result.best.config."""

    def __init__(self, result: TuneResult) -> None:
        super().__init__()
        self.result = result


class ConfigChosen(Message):
    """A config to use from now on (Chat, Export): e.g. a probe row picked by hand."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config


class RigChanged(Message):
    """The rig was (re)detected or a reference rig was picked: the App re-plans the selection."""

    def __init__(self, rig: Rig) -> None:
        super().__init__()
        self.rig = rig
