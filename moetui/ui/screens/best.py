"""Best config for my rig: one click from nothing to a tuned chat (a little over 400 lines: the six steps
are one flow in one worker thread and read best in one place; the dead ends live in best_dead_ends.py).
Steps, shown as a checklist:

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

from moetui.errors import Cancelled, ConfigError, HubError, MoetuiError, first_line, in_words
from moetui.hardware import Rig, detect_rig
from moetui.hub.best_pick import NothingFits, pick_from_catalog
from moetui.hub.cache import cached_model_path
from moetui.hub.catalog import CatalogModel
from moetui.hub.listing import looks_like_hub_ref
from moetui.ui.screens.chat import ChatScreen
from moetui.ui.screens.flow_common import FLOWS_TCSS, app_state, open_screen
from moetui.ui.screens.best_dead_ends import hub_unreachable_dialog, nothing_fits_dialog
from moetui.ui.screens.best_messages import (
    FlowEnded,
    FlowOutcome,
    FlowReporter,
    ProgressChanged,
    StepChanged,
    TargetChanged,
)
from moetui.ui.screens.tune import WORKLOAD_CHOICES, with_picked_workload, workload_choice
from moetui.ui.tune_view import TunerEvent, TuneView, describe_probe, probe_name
from moetui.ui.state import ModelSelected, PlanChanged, RigChanged, SettingsChanged, TuneCompleted
from moetui.ui.widgets.flow_checklist import FlowChecklist, Step
from moetui.ui.widgets.flow_error_dialog import show_error
from moetui.ui.widgets.format import gib, plan_mode
from moetui.ui.widgets.probe_plot import ProbePlot
from moetui.ui.widgets.progress_eta import ProgressEta
from moetui.ui.widgets.tick_box import TickBox
from moetui.hub.download import DownloadCancelled, DownloadProgress, download_model
from moetui.model.info import ModelInfo
from moetui.model.inspect import inspect_file
from moetui.sizing.plan import Plan
from moetui.resolver import plan_for, plan_options_for
from moetui.resolver.tuning import tune
from moetui.sizing.settings import Settings
from moetui.tuner import TuneEvent, TuneOptions, TuneResult

DEFAULT_BUDGET_S = 120
STEPS = [
    Step("rig", "Rig"),
    Step("model", "Model and quant"),
    Step("download", "Download"),
    Step("plan", "Plan"),
    Step("tune", "Tune"),
    Step("chat", "Chat"),
]


FlowCancelled = Cancelled  # the user cancelled the flow: the one cancellation type (moetui.errors)


class BestConfigScreen(Screen):
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
            tail = f" · best {describe_probe(best)}" if best is not None else ""
            self._detail(f"probe {probe.index} {probe_name(probe)}: {probe.status}{tail}")

    # --- the flow (worker thread) -----------------------------------------------------------------
    @work(thread=True, exclusive=True, group="best")
    def _flow(self, rig: Rig | None, selected: str | None, selected_info: ModelInfo | None,
              settings: Settings, budget: float, retune: bool, cancel: threading.Event) -> None:
        current = "rig"
        say = FlowReporter(self, cancel)

        def check() -> None:
            if cancel.is_set():
                raise FlowCancelled("cancelled")

        try:
            rig = self._step_rig(rig, cancel, say)
            check()
            current = "model"
            path, ref, info = self._step_model(rig, selected, selected_info, settings, say)
            check()
            current = "download"
            path = self._step_download(path, ref, cancel, say)
            check()
            current = "plan"
            info, plan = self._step_plan(path, info, rig, settings, say)
            check()
            current = "tune"
            result = self._step_tune(path, rig, settings, budget, retune, cancel, say)
            check()
            current = "chat"
            say.step("chat", "running", "opening Chat …")
            say.show(FlowEnded(FlowOutcome.DONE, current, result=result))
        except FlowCancelled:
            say.show(FlowEnded(FlowOutcome.CANCELLED, current))
        except MoetuiError as exc:
            # a step interrupted by the cancel may fail on the way out ("nothing could be measured")
            say.show(FlowEnded(FlowOutcome.CANCELLED, current) if cancel.is_set()
                     else FlowEnded(FlowOutcome.FAILED, current, error=exc))
        except Exception as exc:  # noqa: BLE001 - a bug in a step: report it and keep the app up
            say.show(FlowEnded(FlowOutcome.FAILED, current, error=RuntimeError(in_words(exc))))

    def _step_rig(self, rig: Rig | None, cancel: threading.Event, say: FlowReporter) -> Rig:
        if rig is None and app_state(self.app).detecting:
            say.step("rig", "running", "waiting for the app's detection …")
            while rig is None and app_state(self.app).detecting and not cancel.wait(0.1):
                rig = app_state(self.app).rig  # a plain read of the shared state; the App thread writes it
            rig = rig or app_state(self.app).rig
        if rig is not None:
            say.step("rig", "done", rig.name)
            return rig
        if cancel.is_set():
            raise FlowCancelled("cancelled")
        say.step("rig", "running", "detecting …")

        rig = detect_rig(stop=cancel)
        say.tell_app(RigChanged(rig))
        say.step("rig", "done", rig.name)
        return rig

    def _step_model(self, rig: Rig, selected: str | None, selected_info: ModelInfo | None,
                    settings: Settings,
                    say: FlowReporter) -> tuple[Path | None, str | None, ModelInfo | None]:
        """(local path or None, hub ref to download or None, ModelInfo when already known)."""

        if selected and Path(selected).expanduser().is_file():
            path = Path(selected).expanduser()
            quant = (selected_info.file_type if selected_info is not None else None) or "as selected"
            say.step("model", "done", f"{path.name} ({quant}, selected)")
            say.target(f"Model: {path} (the selected local model)")
            return path, None, selected_info
        if selected and looks_like_hub_ref(selected):
            say.step("model", "done", f"{selected} (selected)")
            say.target(f"Model: {selected} (the selected hub model)")
            return None, selected, None
        if selected:
            raise ConfigError(f"{selected}: the selected model is neither a local GGUF nor a hub reference; "
                              "pick one in Models (m), or clear it to use the catalog")
        if self.take_ref is not None:  # "take the best anyway" from the nothing-fits dialog
            ref, self.take_ref = self.take_ref, None
            say.step("model", "done", f"{ref} (taken anyway, below {self.min_decode_tps:g} tok/s)")
            say.target(f"Model: {ref} (the fastest catalog model for this rig)")
            return None, ref, None
        say.step("model", "running", "sizing the catalog for this rig …")

        def progress(i: int, n: int, name: str) -> None:
            say.progress(i / max(n, 1), None, None, f"sizing {name} ({i + 1}/{n})")

        pick = pick_from_catalog(rig, self.catalog, plan_options_for(rig, settings), self.min_decode_tps,
                                 progress=progress)
        self.picked_shape = pick.model.shape
        say.progress(1.0, None, None, "")
        say.step("model", "done", f"{pick.model.name} {pick.quant.quant} "
            f"(~{gib(pick.quant.size_bytes)}, predicted {pick.plan.decode_tps:.1f} tok/s, {plan_mode(pick.plan.mode)})")
        say.target(f"Model: {pick.ref} (the catalog's best fit for this rig)")
        return None, pick.ref, None

    def _step_download(self, path: Path | None, ref: str | None, cancel: threading.Event, say: FlowReporter) -> Path:
        if path is not None:
            say.step("download", "skipped", "local file")
            return path
        assert ref is not None

        cached = cached_model_path(ref)
        if cached is not None and cached.is_file():
            say.step("download", "skipped", f"already in the HF cache: {cached.name}")
            return cached
        say.step("download", "running", ref)

        def progress(p: DownloadProgress) -> None:
            part = f" part {p.file_index + 1}/{p.n_files}" if p.n_files > 1 else ""
            what = "verifying" if p.phase == "verify" else f"{gib(int(p.speed_bps))}/s"
            say.progress(p.fraction, p.eta_s, None,
                f"{gib(p.bytes_done)} of {gib(p.bytes_total)}{part} · {what}")

        try:
            result = download_model(ref, progress=progress, cancel=cancel)
        except DownloadCancelled:
            raise FlowCancelled("cancelled") from None
        say.progress(1.0, None, result.seconds, "downloaded")
        say.step("download", "done", f"{result.path.name}, {gib(result.size_bytes)} in {result.seconds:.1f} s")
        return result.path

    def _step_plan(self, path: Path, info: ModelInfo | None, rig: Rig, settings: Settings,
                   say: FlowReporter) -> tuple[ModelInfo, Plan]:
        say.step("plan", "running", "inspecting and placing …")
        if info is None or Path(info.path or "") != path:
            info = inspect_file(path)
        draft = inspect_file(settings.draft_path) if settings.draft_path else None
        p = plan_for(info, rig, settings, str(path), draft)  # as the Plan screen plans: the same settings
        self.model_path = str(path)
        say.tell_app(ModelSelected(str(path), info))
        say.tell_app(PlanChanged(p))
        say.step("plan", "done", f"{plan_mode(p.mode)}, ctx {p.config.n_ctx}, predicted {p.decode_tps:.1f} tok/s")
        return info, p

    def _step_tune(self, path: Path, rig: Rig, settings: Settings, budget: float, retune: bool,
                   cancel: threading.Event, say: FlowReporter) -> TuneResult:
        base = self.tune_options or TuneOptions()
        opts = replace(base, settings=settings, budget_s=budget, retune=retune or base.retune)  # planned alike
        say.step("tune", "running", f"budget {budget:.0f} s")
        say.release_model_workers()  # no other model resident while the tuner measures

        def on_event(ev: TuneEvent) -> None:
            if not self.post_message(TunerEvent(ev)):  # thread-safe; False once the screen is closing
                cancel.set()

        result = tune(str(path), rig, opts, on_event=on_event, cancel=cancel)
        if result.stopped == "cancelled":
            raise FlowCancelled("cancelled")
        self.result = result
        say.tell_app(TuneCompleted(result))
        how = "saved profile" if result.from_cache else _probes(len(result.probes))
        say.progress(1.0, None, result.elapsed_s, f"tuned ({how})")
        say.step("tune", "done", f"{describe_probe(result.best)} ({how})")
        return result

    # --- endings (UI thread) ----------------------------------------------------------------------
    def _finish(self, result: TuneResult | None) -> None:
        self.outcome = "done"
        self.running = False
        self.query_one(ProgressEta).stop_clock()
        self._step("chat", "done", "Chat is open with this config")
        if result is not None:
            self._detail(f"Best: {describe_probe(result.best)}")
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


def _probes(n: int) -> str:
    return f"{n} probe" if n == 1 else f"{n} probes"
