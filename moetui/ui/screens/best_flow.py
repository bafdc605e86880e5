"""The Best config flow's six steps, run one after the other in one thread worker (BestConfigScreen's
`_flow`): each step reports to the screen through a FlowReporter (typed messages, best_messages.py) and
sends its result up to the App as the usual messages (RigChanged, ModelSelected, PlanChanged,
TuneCompleted). The screen (best.py) owns the controls, draws the messages and handles the endings."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App
from textual.message import Message

from moetui.errors import Cancelled, ConfigError, MoetuiError, in_words
from moetui.hardware import Rig, detect_rig
from moetui.hub.best_pick import pick_from_catalog
from moetui.hub.cache import cached_model_path
from moetui.hub.catalog import CatalogModel
from moetui.hub.download import DownloadCancelled, DownloadProgress, download_model
from moetui.hub.listing import looks_like_hub_ref
from moetui.model.info import ModelInfo
from moetui.model.inspect import inspect_file
from moetui.resolver import plan_for, plan_options_for
from moetui.resolver.tuning import tune
from moetui.sizing.plan import Plan
from moetui.sizing.settings import Settings
from moetui.tuner import TuneEvent, TuneOptions, TuneResult
from moetui.ui.screens.best_messages import FlowEnded, FlowOutcome, FlowReporter
from moetui.ui.state import ModelSelected, PlanChanged, RigChanged, TuneCompleted, app_state
from moetui.ui.speed_words import factors_words, measured_words
from moetui.ui.tune_view import TunerEvent, probe_name
from moetui.ui.widgets.format import gib, plan_mode

FlowCancelled = Cancelled  # the user cancelled the flow: the one cancellation type (moetui.errors)


class BestFlowSteps:
    """The flow's steps, mixed into BestConfigScreen (a Screen: `app`, `post_message`); the attributes
    below are the screen's, read or written by the steps."""

    app: App
    tune_options: TuneOptions | None
    catalog: list[CatalogModel] | None
    min_decode_tps: float
    take_ref: str | None
    picked_shape: str | None
    model_path: str | None
    result: TuneResult | None

    if TYPE_CHECKING:
        def post_message(self, message: Message) -> bool: ...  # the screen's (Textual's, thread-safe)

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
            f"(~{gib(pick.quant.size_bytes)}, predicted {pick.plan.decode_tps:.1f} tok/s {factors_words(pick.plan)}, "
            f"{plan_mode(pick.plan.mode)})")
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
        say.step("plan", "done", f"{plan_mode(p.mode)}, ctx {p.config.n_ctx}, "
                                 f"predicted {p.decode_tps:.1f} tok/s decode {factors_words(p)}")
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
        say.step("tune", "done", f"{probe_name(result.best)}{measured_words(result, result.best.config)} ({how})")
        return result



def _probes(n: int) -> str:
    return f"{n} probe" if n == 1 else f"{n} probes"
