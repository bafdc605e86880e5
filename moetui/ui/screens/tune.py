"""Tune: drive `moetui.tuner` live. The tuner runs in a thread worker with a cancel Event; its events
come back as `TunerEvent` messages, which `TuneView` (moetui.ui.tune_view, shared with Best config) turns
into the probe table, the tok/s plot, the progress bar with ETA and the current-best line. The result goes
up to the App as TuneCompleted (which makes the winner the active config for Chat and Export)."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from moetui.errors import ConfigError, MoetuiError, first_line, in_words
from moetui.hub.cache import needs_download
from moetui.ui.screens.flow_common import FLOWS_TCSS, release_model_workers
from moetui.ui.state import ConfigChosen, SettingsChanged, TuneCompleted, app_state
from moetui.ui.tune_view import TuneEnded, TunerEvent, TuneView, describe_probe, probe_name, versus_plan
from moetui.ui.widgets.flow_error_dialog import show_error
from moetui.ui.widgets.tick_box import TickBox
from moetui.ui.widgets.probe_plot import ProbePlot
from moetui.ui.widgets.probe_table import ProbeTable
from moetui.ui.widgets.progress_eta import ProgressEta
from moetui.sizing.workload import WORKLOADS
from moetui.hardware import Rig
from moetui.resolver.tuning import tune
from moetui.sizing.settings import Settings
from moetui.tuner import Probe, TuneEvent, TuneOptions, TuneResult

DEFAULT_BUDGET_S = 300
OBJECTIVE_CHOICES = [("turn", "turn"), ("decode", "decode"), ("balanced", "balanced"), ("prefill", "prefill")]
WORKLOAD_CHOICES = [("chat", "chat"), ("long-prompt", "long-prompt"), ("decode", "decode")]


def workload_choice(settings: Settings) -> str:
    """The picker's value for the settings' workload (a custom one shows as chat until picked)."""
    name = settings.workload.name
    return name if name in dict(WORKLOAD_CHOICES) else "chat"


def with_picked_workload(settings: Settings, picked: str) -> Settings:
    """The settings with the workload picked in a Select (a custom one stays while the picker shows it)."""
    return settings if picked == workload_choice(settings) else settings.replace(workload=WORKLOADS[picked])


class TuneScreen(Screen):
    CSS_PATH = FLOWS_TCSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        Binding("escape", "cancel", "Cancel tuning"),
    ]

    running: reactive[bool] = reactive(False)

    def __init__(self, *, options: TuneOptions | None = None, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        """options: a moetui.tuner.TuneOptions to start from (the budget, objective and retune boxes
        override its fields, the app's settings its settings); None: the tuner's defaults."""
        super().__init__(name=name, id=id, classes=classes)
        self.base_options = options
        self.result: TuneResult | None = None  # the last one shown
        self._cancel = threading.Event()
        self.view: TuneView | None = None  # built on mount, over this screen's widgets

    def compose(self) -> ComposeResult:
        yield Static("", id="tune-title", markup=False)
        with Horizontal(id="tune-controls"):
            yield Label("Budget s")
            budget = getattr(self.base_options, "budget_s", DEFAULT_BUDGET_S)
            yield Input(str(int(budget)), id="tune-budget", type="integer")
            objective = getattr(self.base_options, "objective", "turn")
            yield Select(OBJECTIVE_CHOICES, value=objective, allow_blank=False, id="tune-objective")
            yield Select(WORKLOAD_CHOICES, value=workload_choice(app_state(self.app).settings), allow_blank=False,
                         id="tune-workload")
            yield TickBox("Retune", value=bool(getattr(self.base_options, "retune", False)), id="tune-retune")
            yield Button("Start", id="tune-start", variant="success")
            yield Button("Cancel", id="tune-cancel", variant="error", disabled=True)
        yield ProgressEta(id="tune-progress")
        yield Static("No tuning yet: press Start (s).", id="tune-best", markup=False)
        yield ProbePlot(id="tune-plot")
        yield ProbeTable(id="tune-table")
        yield Footer()

    @property
    def best(self) -> Probe | None:
        """The best Probe so far."""
        return self.view.best if self.view is not None else None

    @property
    def events_seen(self) -> int:
        return self.view.events_seen if self.view is not None else 0

    def on_mount(self) -> None:
        self.view = TuneView(self.query_one(ProgressEta), self.query_one(ProbePlot), self.query_one(ProbeTable))
        self.query_one("#tune-start", Button).focus()  # not the budget box: "s" must reach the screen
        self.refresh_from_state()

    def refresh_from_state(self) -> None:
        state = app_state(self.app)
        model = Path(state.model_path).name if state.model_path else "no model selected (m)"
        rig = state.rig.name if state.rig is not None else "rig not detected yet"
        self.query_one("#tune-title", Static).update(f"Tune {model} on {rig}")
        picker = self.query_one("#tune-workload", Select)
        if picker.value != workload_choice(state.settings) and not self.running:
            picker.value = workload_choice(state.settings)  # changed on Best config: the same setting
        if not self.running and state.tuned is not None and state.tuned is not self.result and self.view is not None:
            self.view.restart(None, "")
            self.show_result(state.tuned)  # tuned elsewhere (Best config): never leave an older tune on show

    # --- start / cancel ---------------------------------------------------------------------------
    def options(self) -> TuneOptions:
        """TuneOptions from the base options and the controls. Raises ConfigError on a bad budget."""
        raw = self.query_one("#tune-budget", Input).value.strip()
        try:
            budget = float(raw)
        except ValueError:
            raise ConfigError(f"the budget must be a number of seconds, not {raw!r}") from None
        objective = self.query_one("#tune-objective", Select).value
        base = self.base_options or TuneOptions()
        # the app's settings as they are (context, margin, KV type, ... from Plan), with the workload picked
        settings = with_picked_workload(app_state(self.app).settings, str(self.query_one("#tune-workload", Select).value))
        opts = replace(base, settings=settings, budget_s=budget, objective=str(objective),
                       retune=self.query_one("#tune-retune", Checkbox).value)
        opts.validate()
        return opts

    def action_start(self) -> None:
        if self.running:
            return
        state = app_state(self.app)
        if state.model_path and needs_download(state.model_path):
            self.notify(f"{state.model_path} is not downloaded: a tune measures the file. Chat (c) offers the "
                        "download; Best config (b) downloads and tunes it.", title="Not downloaded", severity="warning")
            return
        if not state.model_path or not Path(state.model_path).is_file():
            self.notify("Select a local model first (m), or run Best config (b) to get one.", severity="warning")
            return
        if state.rig is None:
            self.notify("The rig is still being detected; try again in a moment.", severity="warning")
            return
        try:
            opts = self.options()
        except MoetuiError as exc:
            self.notify(str(exc), title="Cannot tune", severity="error")
            return
        self._cancel = threading.Event()
        self.result = None
        assert self.view is not None
        self.view.restart(opts.budget_s)
        self.query_one("#tune-best", Static).update("Measuring the plan first …")
        self.running = True
        release_model_workers(self.app)  # measure on a machine with no other model loaded
        self._run(state.model_path, state.rig, opts, self._cancel)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Esc cancels only a running tune (and shows only then); when idle it goes on to the App, which
        leaves a text box."""
        if action == "cancel":
            return self.running
        return True

    @on(Select.Changed, "#tune-workload")
    def _workload_picked(self, event: Select.Changed) -> None:
        settings = app_state(self.app).settings
        picked = with_picked_workload(settings, str(event.value))
        if picked is not settings:
            self.post_message(SettingsChanged(picked))  # Plan and Best plan for it too

    @on(Input.Submitted, "#tune-budget")
    def _budget_submitted(self) -> None:
        self.action_start()

    def action_cancel(self) -> None:
        if self.running:
            self._cancel.set()
            self.query_one(ProgressEta).message = "cancelling …"

    @on(Button.Pressed, "#tune-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#tune-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def watch_running(self, running: bool) -> None:
        start, cancel = self.query_one("#tune-start", Button), self.query_one("#tune-cancel", Button)
        cancel.disabled = not running
        # the settings cannot change mid-tune; disabled, the budget box cannot take the focus (and with it
        # q and the screen letters) when the Start button gives it up
        for widget in (self.query_one("#tune-budget", Input), self.query_one("#tune-objective", Select),
                       self.query_one("#tune-retune", Checkbox)):
            widget.disabled = running
        if running:
            cancel.focus()
            start.disabled = True
        else:
            start.disabled = False
            if self.is_current:
                start.focus()
        self.refresh_bindings()

    def on_unmount(self) -> None:
        self._cancel.set()  # the app is closing: the tuner stops and closes its model worker

    # --- the tuner thread -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="tune")
    def _run(self, model_path: str, rig: Rig, options: TuneOptions, cancel: threading.Event) -> None:
        def on_event(ev: TuneEvent) -> None:
            if not self.post_message(TunerEvent(ev)):  # thread-safe; False once the screen is closing
                cancel.set()  # the app is gone: stop measuring

        try:
            result = tune(model_path, rig, options, on_event=on_event, cancel=cancel)
        except MoetuiError as exc:
            # cancelled before anything was measured, the tuner says "nothing could be measured": that is
            # the user's cancel, not a failure
            self.post_message(TuneEnded(error=exc, cancelled=cancel.is_set()))
            return
        except Exception as exc:  # noqa: BLE001 - a tuner bug: report it, keep the app up
            self.post_message(TuneEnded(error=RuntimeError(in_words(exc))))
            return
        self.post_message(TuneEnded(result=result))

    # --- events -> widgets (UI thread) ------------------------------------------------------------
    def on_tuner_event(self, message: TunerEvent) -> None:
        message.stop()
        self.apply_event(message.event)

    def apply_event(self, ev: TuneEvent) -> None:
        assert self.view is not None
        before = self.view.best
        best = self.view.apply(ev)
        if best is not None and best is not before:
            self.query_one("#tune-best", Static).update(f"Best so far: {describe_probe(best)}")

    def show_result(self, result: TuneResult) -> None:
        """Fill the table, plot and best line from a finished (or cached) result."""
        assert self.view is not None
        self.result = result
        self.view.finished(result)
        verdict = versus_plan(result)
        source = "saved profile" if result.from_cache else f"{len(result.probes)} probes, stopped: {result.stopped}"
        self.query_one("#tune-best", Static).update(
            f"Best: {describe_probe(result.best)}{f' ({verdict})' if verdict else ''} · {source}")

    def on_tune_ended(self, message: TuneEnded) -> None:
        message.stop()
        if message.result is not None:
            self._finished(message.result)
        elif message.cancelled:
            self._cancelled(message.error)
        else:
            self._failed(message.error or RuntimeError("the tuner stopped"))

    def _finished(self, result: TuneResult) -> None:
        self.running = False
        self.show_result(result)
        if result.stopped == "cancelled":
            self.notify("Tuning cancelled; the best so far is shown (select its row to use it).", timeout=5)
            return
        self.app.post_message(TuneCompleted(result))
        self.notify(f"Tuned: {probe_name(result.best)}. Chat and Export now use it.", title="Tuning done")

    def _cancelled(self, exc: BaseException | None = None) -> None:
        self.running = False
        assert self.view is not None
        self.view.stopped("cancelled")
        if self.best is None:
            self.query_one("#tune-best", Static).update("Cancelled before a probe finished.")
        self.notify("Tuning cancelled.", timeout=4)

    def _failed(self, exc: BaseException) -> None:
        self.running = False
        assert self.view is not None
        if isinstance(exc, ConfigError):  # refused before it ran (a budget too small for this model): say what works
            self.view.restart(None, "not started")  # nothing ran: an empty bar, not the clock's 99%
            self.query_one("#tune-best", Static).update(f"Not started: {first_line(exc)}")
            self.notify(str(exc), title="Cannot tune", severity="error", timeout=10)
            return
        self.view.stopped("failed")
        self.query_one("#tune-best", Static).update(f"Tuning failed: {first_line(exc)}")
        show_error(self, "Tuning failed", exc)

    @on(ProbeTable.ProbePicked)
    def _probe_picked(self, event: ProbeTable.ProbePicked) -> None:
        self.app.post_message(ConfigChosen(event.probe.config))
        self.notify(f"Using probe {event.probe.index}: {probe_name(event.probe)}", timeout=4)
