"""Best config for my rig: one click from nothing to a tuned chat. The screen: its controls, the checklist
and progress the flow's messages draw, and the endings; the steps themselves run in one worker thread
(best_flow.py), the dead ends' dialogs live in best_dead_ends.py. Steps, shown as a checklist:

1. the rig (the app's, or detected now),
2. the model and quant: the selected local model, a selected hub reference, or else the catalog's best
   fit for this rig (moetui.hub.catalog + moetui.sizing.quant_choice, see moetui/hub/best_pick.py),
3. the download, when the file is not local yet (resumable; progress with speed and ETA),
4. the plan (placement, context, KV type),
5. the tune, within a time budget (a saved profile for this rig and model answers at once),
6. Chat, with the winner.

All of it runs in one thread worker with a cancel Event; each step reports to the screen with typed
messages (best_messages.py), and each result goes up to the App as the usual messages (ModelSelected,
PlanChanged, TuneCompleted), so the other screens follow. A failing step is marked ✗ with its reason, a
dialog explains, the app stays up.
Two endings offer a way on instead of a Close button (moetui.ui.widgets.choice_dialog): nothing in the
catalog reaching the minimum speed (a short table; lower the minimum, take the fastest anyway, or use a
local model) and a hub that cannot be reached (what works offline: a local model, the demo model, the
picked model's proxy, what-if rigs).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from moetui.errors import HubError, first_line
from moetui.hub.best_pick import NothingFits
from moetui.hub.catalog import CatalogModel
from moetui.tuner import TuneOptions, TuneResult
from moetui.ui.screens.best_dead_ends import hub_unreachable_dialog, nothing_fits_dialog
from moetui.ui.screens.best_flow import BestFlowSteps
from moetui.ui.screens.best_messages import FlowEnded, FlowOutcome, ProgressChanged, StepChanged, TargetChanged
from moetui.ui.screens.chat import ChatScreen
from moetui.ui.screens.flow_common import FLOWS_TCSS, open_screen
from moetui.ui.screens.tune import WORKLOAD_CHOICES, with_picked_workload, workload_choice
from moetui.ui.speed_words import measured_words
from moetui.ui.state import SettingsChanged, app_state
from moetui.ui.tune_view import TunerEvent, TuneView, describe_probe, probe_name
from moetui.ui.widgets.flow_checklist import FlowChecklist, Step
from moetui.ui.widgets.flow_error_dialog import show_error
from moetui.ui.widgets.probe_plot import ProbePlot
from moetui.ui.widgets.progress_eta import ProgressEta
from moetui.ui.widgets.tick_box import TickBox


DEFAULT_BUDGET_S = 120
STEPS = [
    Step("rig", "Rig"),
    Step("model", "Model and quant"),
    Step("download", "Download"),
    Step("plan", "Plan"),
    Step("tune", "Tune"),
    Step("chat", "Chat"),
]


class BestConfigScreen(Screen, BestFlowSteps):
    CSS_PATH = FLOWS_TCSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "start", "Go"),
        Binding("escape", "cancel", "Cancel"),
    ]

    running: reactive[bool] = reactive(False)

    def __init__(self, *, budget_s: float = DEFAULT_BUDGET_S, autostart: bool = True,
                 tune_options: TuneOptions | None = None, catalog: list[CatalogModel] | None = None, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        """budget_s: the tuning budget; autostart: start when first shown (the one click is the one that
        opened this screen); tune_options: a TuneOptions to start from (tests shrink the measurement);
        catalog: catalog entries to pick from (None: presets/models.toml)."""
        super().__init__(name=name, id=id, classes=classes)
        self.budget_s = budget_s
        self.autostart = autostart
        self.tune_options = tune_options
        self.catalog = catalog
        self.outcome: str | None = None  # "done" | "failed" | "cancelled" once a run ended
        self.result: TuneResult | None = None  # the last run's
        self.model_path: str | None = None  # the local GGUF the flow settled on
        self.min_decode_tps = 10.0  # what the catalog pick must reach (lowered from the nothing-fits dialog)
        self.take_ref: str | None = None  # a catalog pick taken anyway, below the minimum
        self.picked_shape: str | None = None  # the catalog pick's shape preset: its proxy works offline
        self.start_on: str | None = None  # the next run's model, chosen from a dialog
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static("Best config for my rig", id="best-title")
        yield Static("", id="best-target", markup=False)
        with Horizontal(id="best-controls"):
            yield Label("Tune budget s")
            yield Input(str(int(self.budget_s)), id="best-budget", type="integer")
            yield Select(WORKLOAD_CHOICES, value=workload_choice(app_state(self.app).settings), allow_blank=False,
                         id="best-workload")
            yield TickBox("Retune", value=False, id="best-retune")
            yield Button("Go", id="best-start", variant="success")
            yield Button("Cancel", id="best-cancel", variant="error", disabled=True)
        yield FlowChecklist(id="best-steps")
        yield ProgressEta(id="best-progress")
        yield Static("", id="best-detail", markup=False)
        yield ProbePlot(id="best-plot")
        yield Footer()

    def on_mount(self) -> None:
        self.view = TuneView(self.query_one(ProgressEta), self.query_one(ProbePlot))
        self.query_one(FlowChecklist).set_steps(list(STEPS))
        self.query_one("#best-start", Button).focus()
        self.refresh_from_state()
        if self.autostart:
            self.call_after_refresh(self.action_start)

    def refresh_from_state(self) -> None:
        if self.running:
            return  # the flow itself is changing the state: its own lines say more
        state = app_state(self.app)
        picker = self.query_one("#best-workload", Select)
        if picker.value != workload_choice(state.settings):
            picker.value = workload_choice(state.settings)  # changed on Tune: the same setting
        if state.model_path:
            self._target(f"Model: {Path(state.model_path).name if Path(state.model_path).exists() else state.model_path}")
        else:
            self._target("Model: none selected, the catalog's best fit for this rig will be picked")

    def on_unmount(self) -> None:
        self._cancel.set()

    # --- controls ---------------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.running:
            return
        raw = self.query_one("#best-budget", Input).value.strip()
        try:
            budget = float(raw)
            if budget <= 0:
                raise ValueError
        except ValueError:
            self.notify(f"The tune budget must be a positive number of seconds, not {raw!r}.", severity="error")
            return
        state = app_state(self.app)
        selected, selected_info = state.model_path, state.model_info
        if self.start_on is not None:  # a model chosen from a dialog: the App may not have inspected it yet
            selected, selected_info, self.start_on = self.start_on, None, None
        self._cancel = threading.Event()
        self.outcome, self.result, self.model_path = None, None, None
        self.query_one(FlowChecklist).set_steps(list(STEPS))
        self.view.restart(budget, "")
        self._detail("")
        self.running = True
        # the app's settings (Plan's context, margin, KV type, ...) with the workload picked here: the flow
        # plans and tunes with this one object
        settings = with_picked_workload(state.settings, str(self.query_one("#best-workload", Select).value))
        if settings is not state.settings:
            self.post_message(SettingsChanged(settings))
        self._flow(state.rig, selected, selected_info, settings, budget,
                   self.query_one("#best-retune", Checkbox).value, self._cancel)

    def action_cancel(self) -> None:
        if self.running:
            self._cancel.set()
            self._detail("cancelling …")

    @on(Select.Changed, "#best-workload")
    def _workload_picked(self, event: Select.Changed) -> None:
        settings = app_state(self.app).settings
        picked = with_picked_workload(settings, str(event.value))
        if picked is not settings and not self.running:
            self.post_message(SettingsChanged(picked))

    @on(Button.Pressed, "#best-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#best-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def watch_running(self, running: bool) -> None:
        start = self.query_one("#best-start", Button)
        start.disabled = running
        start.label = "Go" if self.outcome is None else "Run again"
        self.query_one("#best-cancel", Button).disabled = not running
        if not running and self.is_current:
            start.focus()

    # --- the flow's messages (UI thread) ----------------------------------------------------------
    def on_step_changed(self, message: StepChanged) -> None:
        self._step(message.key, message.status, message.detail)

    def on_target_changed(self, message: TargetChanged) -> None:
        self._target(message.text)

    def on_progress_changed(self, message: ProgressChanged) -> None:
        self.query_one(ProgressEta).update_progress(message.fraction, eta_s=message.eta_s,
                                                    elapsed_s=message.elapsed_s, message=message.message)

    def on_flow_ended(self, message: FlowEnded) -> None:
        if message.outcome is FlowOutcome.DONE:
            self._finish(message.result)
        else:
            self._stopped(message.step, message.outcome, message.error)

    def _step(self, key: str, status: str, detail: str | None = None) -> None:
        self.query_one(FlowChecklist).set_step(key, status, detail)

    def _target(self, text: str) -> None:
        self.query_one("#best-target", Static).update(text)

    def _detail(self, text: str) -> None:
        self.query_one("#best-detail", Static).update(text)

    def on_tuner_event(self, message: TunerEvent) -> None:
        """The tune step's events, shown by the same TuneView as the Tune screen's."""
        message.stop()
        ev = message.event
        best = self.view.apply(ev)
        probe = getattr(ev, "probe", None)
        if probe is not None and getattr(ev, "n_done", None) is not None and hasattr(ev, "elapsed_s"):
            tail = f" · best so far, measured: {describe_probe(best)}" if best is not None else ""
            self._detail(f"probe {probe.index} {probe_name(probe)}: {probe.status}{tail}")

    # --- endings (UI thread) ----------------------------------------------------------------------
    def _finish(self, result: TuneResult | None) -> None:
        self.outcome = "done"
        self.running = False
        self.query_one(ProgressEta).stop_clock()
        self._step("chat", "done", "Chat is open with this config")
        if result is not None:  # the winner, measured (its figures, when)
            self._detail(f"Best: {probe_name(result.best)}{measured_words(result, result.best.config)}")
        # after TuneCompleted (queued before this) has set the config, so Chat loads the winner

        self.app.call_later(open_screen, self.app, "chat", ChatScreen)

    def _stopped(self, step: str, outcome: FlowOutcome, exc: BaseException | None) -> None:
        self.outcome = outcome
        self.running = False
        checklist = self.query_one(FlowChecklist)
        reason = "cancelled" if exc is None else first_line(exc, 160)
        checklist.set_step(step, "failed" if exc is not None else "skipped", reason)
        for s in checklist.steps:
            if s.status == "pending":
                checklist.set_step(s.key, "skipped")
        self.view.stopped(outcome)
        if isinstance(exc, NothingFits):
            self._nothing_fits(exc)
        elif isinstance(exc, HubError) and str(exc).startswith("offline"):
            self._hub_unreachable(exc)
        elif exc is not None:
            title = "Download failed" if isinstance(exc, HubError) else f"Best config: {step} failed"
            show_error(self, title, exc)
        else:
            self.notify("Best config cancelled.", timeout=4)

    def _nothing_fits(self, exc: NothingFits) -> None:
        nothing_fits_dialog(self, exc)

    def _hub_unreachable(self, exc: BaseException) -> None:
        hub_unreachable_dialog(self, exc)
