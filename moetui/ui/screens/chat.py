"""Chat: streaming chat with the active config (tuned, else planned) in an isolated model worker.

The worker process (`ModelWorker`) is loaded in a thread worker and kept while the screen lives, so
switching to Export and back does not reload; it is reloaded when the active config changes and closed
when the screen is unmounted (app exit), so no model process outlives the app. The thread workers (load,
reply, memory sampler) report as typed messages (chat_messages.py); tokens arrive in batches (at most 20
UI updates a second, whatever the decode speed), so the UI costs the model little: the child process
never waits on us.

Over 400 lines because the model process's lifecycle (load, reload, release, crash), the streaming reply and
the live sampler share the screen's state; the messages live in chat_messages.py, the offer to download a
hub model that is not on this machine yet in chat_download.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import psutil
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Collapsible, Footer, Input, Static

from moetui.config import RunConfig
from moetui.errors import MoetuiError, first_line
from moetui.hub.cache import cached_model_path, needs_download
from moetui.hub.listing import looks_like_hub_ref
from moetui.hardware import Sampler
from moetui.model.info import ModelInfo
from moetui.runtime.client import DoneEvent, ErrorEvent, LoadInfo, ModelWorker, StatsEvent, TokenEvent
from moetui.runtime.stats import LiveStats
from moetui.sizing.overrides import layers_from_overrides
from moetui.sizing.plan import gpu_usable
from moetui.ui.collector import CollectorHold
from moetui.ui.state import app_state
from moetui.ui.keys import type_into_focused_box
from moetui.ui.screens.flow_common import FLOWS_TCSS
from moetui.ui.screens.chat_download import DownloadOffer, not_downloaded
from moetui.ui.screens.chat_messages import MemorySampled, ModelLoadEnded, ReplyEvent
from moetui.ui.widgets.chat_log import ChatLog, ChatMessage
from moetui.ui.widgets.flow_error_dialog import show_error
from moetui.ui.widgets.stats_bar import ChatStatsBar

FLUSH_S = 0.05  # reply text reaches the screen on this steady tick (20 Hz: a reader sees it stream), and each UI
# update costs the UI process a few ms of CPU that a CPU-bound model would otherwise use
SAMPLE_S = 0.5  # VRAM/RSS sampling period (2 Hz)
# keyword arguments of ModelWorker.chat: temperature, top_p, ... (numbers) and stop (strings)
Sampling = dict[str, float | int | list[str]]


class ChatScreen(DownloadOffer, Screen):
    CSS_PATH = FLOWS_TCSS
    BINDINGS: ClassVar[list[BindingType]] = [
        # shown (and bound) only while there is a reply or a download to stop; otherwise Esc is the App's
        # "Leave field", and the footer says so
        Binding("escape", "stop_or_leave_input", "Stop",
                tooltip="stop the reply or the download; with neither running, Esc leaves the message box "
                        "(then h, m, p ... switch screens; Enter goes back to typing)"),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("f2", "system_prompt", "System"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    # no watcher runs at mount (init=False): the composed widgets already show the initial values, and a
    # screen that mounts as the app closes has no widgets left to query
    status_line: reactive[str] = reactive("", init=False)
    model_loading: reactive[bool] = reactive(False)
    generating: reactive[bool] = reactive(False, init=False)

    def __init__(self, *, max_tokens: int = 512, sampling: Sampling | None = None, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_tokens = max_tokens
        self.sampling: Sampling = dict(sampling or {"temperature": 0.7, "top_p": 0.95})
        self.history: list[dict[str, str]] = []  # user/assistant turns (the system prompt is added per request)
        self.model_worker: ModelWorker | None = None  # once loaded
        self.load_info: LoadInfo | None = None
        self.loaded_config: RunConfig | None = None  # the config the worker runs
        self._loading_config: RunConfig | None = None
        self._load_seq = 0
        self._failed_config: RunConfig | None = None  # the config whose load failed last (not retried by itself)
        self._chat_model: str | None = None  # the model file the conversation in the log is with
        self._load_errors: list[ChatMessage] = []  # "could not load" lines, gone once a load succeeds
        self._pending: str | None = None  # a message typed while the model loads
        self._shutting_down = threading.Event()
        # Workers a load thread started and posted, not yet taken by the screen: if the screen closes before
        # their ModelLoadEnded is handled, on_unmount closes them, so no model process outlives the screen.
        self._unclaimed: set[ModelWorker] = set()
        self._unclaimed_lock = threading.Lock()
        self._reply: ChatMessage | None = None
        self.offered: str | None = None  # the hub model whose download was last offered (asked once per selection)
        self.downloading: str | None = None  # the hub model being downloaded
        self._download_cancel = threading.Event()
        self.collector = CollectorHold()  # held while a reply streams
        self._unshown: list[str] = []  # reply text the worker thread got and the screen has not drawn yet
        self._unshown_lock = threading.Lock()
        self._drain_timer: Timer | None = None  # drains _unshown every FLUSH_S while a reply streams
        self.stats_events = 0  # live StatsEvents received (the bar's >= 2 Hz feed while generating)
        self.last_done: DoneEvent | None = None  # the last reply's (tests and the overhead check read it)

    # --- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="chat-title", markup=False)
        with Collapsible(title="System prompt (F2)", collapsed=True, id="chat-system"):
            yield Input(placeholder="e.g. You are a concise assistant.", id="chat-system-input")
        yield ChatLog(id="chat-log")
        yield ChatStatsBar(id="chat-stats")
        with Horizontal(id="chat-input-row"):
            yield Input(placeholder="Message, Enter to send", id="chat-input")
            yield Button("Stop", id="chat-stop", variant="error", disabled=True)
            yield Button("New", id="chat-new")
        yield Footer()

    def on_mount(self) -> None:
        self._drain_timer = self.set_interval(FLUSH_S, self._show_unshown, pause=True)
        if self._widgets_gone():
            return
        self._show_gpu_use(self.active_config())
        self.query_one("#chat-input", Input).focus()
        self._sample_loop()
        self.start_pending_download()
        self.ensure_loaded()

    def on_screen_resume(self) -> None:
        if self._widgets_gone():
            return
        # back on Chat (after Esc, another screen, a dialog): typing goes to the message box again
        self.set_focus(self.query_one("#chat-input", Input))
        self.ensure_loaded()

    def _widgets_gone(self) -> bool:
        """The app closed as this screen mounted (Best config opens Chat as its flow ends; seen in CI) and is
        removing its widgets: nothing is shown, and no model load may start that would outlive the screen."""
        return not self.query("#chat-input")

    def refresh_from_state(self) -> None:
        """Called by the App after the shared state changed: follow a new active config. Only the visible
        Chat loads a model; a hidden one just lets go of a process running an outdated config."""
        if not self.is_mounted:
            return
        self._show_gpu_use(self.active_config())
        if self.is_current:
            self.ensure_loaded()
        elif self.loaded_config is not None and self.active_config() != self.loaded_config and not self.generating:
            self.release_worker()

    def _show_gpu_use(self, cfg: RunConfig | None) -> None:
        """A CPU-only rig or config has no VRAM to show: the stats bar leaves it out (attributes down)."""
        rig = app_state(self.app).rig
        self.query_one(ChatStatsBar).uses_gpu = ((rig is None or gpu_usable(rig))
                                                 and (cfg is None or cfg.n_gpu_layers != 0))

    def release_worker(self) -> None:
        """Free the model process (RAM, VRAM) without blocking the UI, e.g. before the tuner measures: a
        second resident model would skew its numbers or make it run out of memory. The next message, or
        showing Chat again, reloads."""
        self.action_stop()
        self._load_seq += 1  # a load in flight is stale now
        w, self.model_worker, self.load_info, self.loaded_config = self.model_worker, None, None, None
        self._loading_config = None
        self.model_loading = False
        if w is not None:
            self.status_line = "Model released (it reloads when you send a message)."
            threading.Thread(target=w.close, kwargs={"timeout": 3}, daemon=True, name="moetui-chat-release").start()

    def on_unmount(self) -> None:
        self.collector.release()
        self._shutting_down.set()
        with self._unclaimed_lock:
            landed, self._unclaimed = list(self._unclaimed), set()
        for worker in landed:
            worker.close(timeout=2)
        self.close_worker()

    # --- model worker lifecycle -------------------------------------------------------------------
    def active_config(self) -> RunConfig | None:
        active = app_state(self.app).active(defaults=True)  # no plan yet: llama.cpp's defaults
        cfg = active.config if active else None
        if cfg is not None and looks_like_hub_ref(cfg.model_path) and not Path(cfg.model_path).exists():
            cached = cached_model_path(cfg.model_path)  # a hub model downloaded since it was planned
            if cached is not None and cached.is_file():
                cfg = replace(cfg, model_path=str(cached))
        return cfg

    def _runnable(self, cfg: RunConfig) -> bool:
        """Whether the config names a file to load; if not, say why (and offer a download) instead of
        letting the worker fail with "no such model file"."""
        path = cfg.model_path
        if Path(path).expanduser().is_file():
            return True
        if needs_download(path):
            if self.downloading is not None:
                return False  # its progress is in the status line
            self.status_line = not_downloaded(path)
            if self.offered != path and self.is_current:
                self.offer_download(path)
            return False
        self.status_line = (f"{path} has no file on this machine (a shape preset or a moved file): pick a local or "
                            "downloaded model in Models (m), or run Best config (b).")
        return False

    def ensure_loaded(self) -> None:
        """Load (or reload) the active config unless it already runs or is loading. Mid-reply, wait."""
        if self._widgets_gone():
            return
        cfg = self.active_config()
        if cfg is None:
            self.status_line = "No model selected: pick one (m), plan it (p), or run Best config (b)."
            return
        if self.generating or cfg == self._loading_config or (cfg == self.loaded_config and self._worker_alive()):
            return
        if cfg == self._failed_config:
            return  # it failed already: retry only when asked (a message, Ctrl+R), not on every screen resume
        if self.downloading is not None or not self._runnable(cfg):
            return
        self.start_load(cfg)

    def start_load(self, config: RunConfig) -> None:
        """UI thread: mark the load as in progress *before* the thread starts, so a second call (mount and
        resume arrive together) does not start a second process; a newer load supersedes an older one."""
        if self._chat_model is not None and config.model_path != self._chat_model and not self.generating:
            self._clear_conversation()  # another model: its errors and its conversation are not this one's
            self.query_one(ChatStatsBar).clear_figures()  # ... nor its speeds
        self._chat_model = config.model_path
        self._load_seq += 1
        self._loading_config = config
        self.model_loading = True
        old, self.model_worker, self.load_info, self.loaded_config = self.model_worker, None, None, None
        self.status_line = f"Loading {Path(config.model_path).name} …"
        self._load(config, old, self._load_seq)

    def _worker_alive(self) -> bool:
        return self.model_worker is not None and self.model_worker.alive

    @work(thread=True, group="chat-load")
    def _load(self, config: RunConfig, old: ModelWorker | None, seq: int) -> None:
        """Close the outdated worker, start one for `config`, and hand it to the screen by a message."""
        if old is not None:
            old.close(timeout=3)
        worker = ModelWorker()
        try:
            info = worker.start(config)
        except MoetuiError as exc:
            self.post_message(ModelLoadEnded(config, seq, error=exc))
            return
        with self._unclaimed_lock:
            closing = self._shutting_down.is_set()
            if not closing:
                self._unclaimed.add(worker)
        if closing:
            worker.close(timeout=2)  # the screen or app went away while we loaded
        elif not self.post_message(ModelLoadEnded(config, seq, worker=worker, info=info)) and self._claim(worker):
            worker.close(timeout=2)  # the screen is closing: nobody will take it

    def _claim(self, worker: ModelWorker) -> bool:
        """Take `worker` out of the unclaimed set; False when on_unmount (or the load thread) has it."""
        with self._unclaimed_lock:
            if worker not in self._unclaimed:
                return False
            self._unclaimed.discard(worker)
            return True

    def on_model_load_ended(self, message: ModelLoadEnded) -> None:
        if message.error is not None:
            self._load_failed(message.config, message.error, message.seq)
        elif message.worker is not None and message.info is not None and self._claim(message.worker):
            self._load_done(message.config, message.worker, message.info, message.seq)

    def _load_done(self, config: RunConfig, worker: ModelWorker, info: LoadInfo, seq: int) -> None:
        if seq != self._load_seq or self._shutting_down.is_set():
            worker.kill()  # superseded by a newer load (or closing): never keep two model processes
            return
        self.model_worker, self.load_info, self.loaded_config = worker, info, config
        self._loading_config = None
        self.model_loading = False
        for msg in self._load_errors:  # an earlier load's error is not this model's state
            msg.remove()
        self._load_errors.clear()
        bar = self.query_one(ChatStatsBar)
        bar.experts_ram = info.buffers.experts_ram
        bar.experts_total = info.buffers.experts_ram + info.buffers.experts_vram
        self.status_line = (f"{Path(config.model_path).name} · ctx {info.n_ctx} · {_placement(config)} · "
                            f"loaded in {info.load_s:.1f} s · {info.chat_template}")
        if _is_proxy(app_state(self.app).model_info, config):
            self.query_one(ChatLog).add_message(
                "info", "This is a moetui proxy with random weights: the words are noise, the speed is real.")
        if self._pending is not None:
            text, self._pending = self._pending, None
            self._send(text)
        elif config != self.active_config():
            self.ensure_loaded()  # the state moved on while we loaded

    def _load_failed(self, config: RunConfig, exc: MoetuiError, seq: int) -> None:
        if seq != self._load_seq:
            return  # an older request failed after a newer one started: only the newest speaks
        self._loading_config = None
        self._failed_config = config
        self.model_loading = False
        self.model_worker = self.load_info = self.loaded_config = None
        self._pending = None
        self.status_line = f"Could not load {Path(config.model_path).name}: {first_line(exc, 120)}"
        self._load_errors.append(self.query_one(ChatLog).add_message("error", first_line(exc)))
        show_error(self, "The model did not load", exc)

    def close_worker(self) -> None:
        self._load_seq += 1  # a load still in flight is now stale: its process is closed when it lands
        w, self.model_worker = self.model_worker, None
        self.loaded_config = None
        if w is not None:
            w.close(timeout=2)

    # --- chat -------------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.generating:
            self.notify("Still answering: Esc stops it.", severity="warning")
            return
        event.input.value = ""
        self.send(text)

    def send(self, text: str) -> None:
        """Send a user message (loads the model first when needed)."""
        if self._worker_alive() and not self.model_loading:
            self._send(text)
            return
        self._pending = text
        self.query_one(ChatLog).add_message("info", "(waiting for the model to load)")
        if not self.model_loading:
            self._failed_config = None  # sending is asking to try again
            self.offered = None  # ... and to be asked about a download again
            self.ensure_loaded()

    def _send(self, text: str) -> None:
        log = self.query_one(ChatLog)
        log.add_message("user", text)
        self.history.append({"role": "user", "content": text})
        self._reply = log.add_message("assistant", "")
        self._reply.streaming = True
        system = self.query_one("#chat-system-input", Input).value.strip()
        messages = ([{"role": "system", "content": system}] if system else []) + list(self.history)
        self.generating = True
        assert self.model_worker is not None  # send() sends only to a live worker
        self._generate(self.model_worker, messages)

    @work(thread=True, exclusive=True, group="chat-generate")
    def _generate(self, worker: ModelWorker, messages: list[dict[str, str]]) -> None:
        """Worker events -> typed messages (post_message is thread-safe). Token text goes into `_unshown`,
        which the UI thread drains on a steady FLUSH_S timer (and on a wake posted at most every FLUSH_S),
        so the UI's cost does not grow with the decode speed and a token that arrives just after a drain
        waits one timer tick, not until the next token."""
        last = time.monotonic()
        for ev in worker.chat(messages, max_tokens=self.max_tokens, **self.sampling):
            if isinstance(ev, TokenEvent):
                with self._unshown_lock:
                    self._unshown.append(ev.text)
                if time.monotonic() - last >= FLUSH_S:
                    last = time.monotonic()
                    if not self.post_message(ReplyEvent(TokenEvent(""), worker)):
                        worker.stop()  # the screen is closing
                continue
            if isinstance(ev, StatsEvent):
                self.stats_events += 1
            self.post_message(ReplyEvent(ev, worker))

    def on_reply_event(self, message: ReplyEvent) -> None:
        match message.event:
            case TokenEvent():
                self._show_unshown()
            case StatsEvent(stats=stats):
                self._stats(stats)
            case DoneEvent() as done:
                self._show_unshown()
                self._done(done)
            case ErrorEvent(error=error):
                self._show_unshown()
                self._failed(error, message.worker)

    def _show_unshown(self) -> None:
        """The UI thread's side of `_unshown`: whatever text arrived since the last drain, in order."""
        with self._unshown_lock:
            text = "".join(self._unshown)
            self._unshown.clear()
        if text:
            self._tokens(text)

    def _tokens(self, text: str) -> None:
        if self._reply is not None:
            self._reply.text += text
            self.query_one(ChatLog).append_to_last("")  # keeps the view on the end

    def _stats(self, stats: LiveStats) -> None:
        bar = self.query_one(ChatStatsBar)
        bar.phase = stats.phase
        bar.decode_tps = stats.decode_tok_s
        bar.decode_tps_avg = stats.decode_tok_s_avg
        bar.prompt_tps = stats.prompt_tok_s
        bar.tokens = stats.tokens
        if stats.rss_bytes is not None:
            bar.rss_bytes = stats.rss_bytes
        if stats.vram_bytes is not None:
            bar.vram_bytes, bar.vram_scope = stats.vram_bytes, "proc"
        if stats.experts_ram or stats.experts_vram:
            bar.experts_ram, bar.experts_total = stats.experts_ram, stats.experts_ram + stats.experts_vram
        bar.acceptance = stats.acceptance
        bar.samples += 1

    def _done(self, ev: DoneEvent) -> None:
        self.last_done = ev
        self._stats(ev.stats)
        self.query_one(ChatStatsBar).phase = "idle"
        if self._reply is not None:
            self._reply.text = ev.text  # the authoritative text (batches may have split a character)
            self._reply.streaming = False
            if ev.cancelled:
                self._reply.note = "stopped"
            elif ev.finish_reason == "length":
                self._reply.note = f"max {self.max_tokens} tokens"
        self.history.append({"role": "assistant", "content": ev.text})
        self._reply = None
        self.generating = False
        if self.active_config() != self.loaded_config:
            self.ensure_loaded()  # the config changed while we answered

    def _failed(self, exc: MoetuiError, worker: ModelWorker) -> None:
        self.generating = False
        if self._reply is not None:
            self._reply.streaming = False
        if worker is not self.model_worker and not worker.alive:  # we released it ourselves: not an error
            if self._reply is not None:
                self._reply.note = "stopped: model released"
                self._reply = None
            if self.history and self.history[-1]["role"] == "user":
                self.history.pop()
            return
        if self._reply is not None:
            self._reply.note = "failed"
            self._reply = None
        if self.history and self.history[-1]["role"] == "user":
            self.history.pop()  # let the user send it again after a reload
        self.query_one(ChatLog).add_message("error", first_line(exc))
        if not worker.alive:  # crashed or killed: the next message reloads
            if self.model_worker is worker:
                self.model_worker, self.loaded_config = None, None
            worker.kill()
            self.status_line = "The model worker stopped; the next message reloads it (Ctrl+R reloads now)."
        show_error(self, "Generation failed", exc)

    # --- live sampling (VRAM via NVML, RSS via psutil) at 2 Hz ------------------------------------
    @work(thread=True, group="chat-sampler")
    def _sample_loop(self) -> None:
        with Sampler() as sampler:
            while not self._shutting_down.wait(SAMPLE_S):
                w = self.model_worker
                pid = w.pid if w is not None and w.alive else None
                if pid is None or self.generating:
                    continue  # while it generates, the worker's own StatsEvents carry RSS and VRAM
                sample = sampler.sample()
                vram, scope = None, ""
                mine = [g.processes.get(pid) for g in sample.gpus if g.processes.get(pid) is not None]
                if mine:
                    vram, scope = sum(mine), "proc"  # type: ignore[arg-type]
                elif sample.gpus and any(g.vram_used_bytes for g in sample.gpus):
                    vram, scope = sum(g.vram_used_bytes or 0 for g in sample.gpus), "gpu"
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except Exception:  # noqa: BLE001 - the worker just exited
                    rss = None
                if not self.post_message(MemorySampled(vram, scope, rss)):
                    return  # the screen is closing

    def on_memory_sampled(self, message: MemorySampled) -> None:
        bar = self.query_one(ChatStatsBar)
        if message.vram_bytes is not None:
            bar.vram_bytes, bar.vram_scope = message.vram_bytes, message.vram_scope
        if message.rss_bytes is not None:
            bar.rss_bytes = message.rss_bytes
        bar.samples += 1

    # --- watchers and actions ---------------------------------------------------------------------
    def watch_status_line(self, value: str) -> None:
        self.query_one("#chat-title", Static).update(value)

    def watch_generating(self, value: bool) -> None:
        self.query_one("#chat-stop", Button).disabled = not value
        self.refresh_bindings()  # Esc: "Stop" while it answers, "Leave field" after
        if value:  # a full collection mid-reply froze the screen for up to 280 ms (collector.py)
            self.collector.hold()
            if self._drain_timer is not None:
                self._drain_timer.resume()
        else:
            self.collector.release()
            if self._drain_timer is not None:
                self._drain_timer.pause()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Esc is "Stop" while a reply or a download runs; otherwise it falls to the App's "Leave field"
        (the footer shows whichever Esc does now)."""
        if action == "stop_or_leave_input":
            return self.generating or self.downloading is not None
        if action == "reload":  # refused mid-reply anyway; hidden then, the footer keeps room for "q Quit"
            return not self.generating
        return True

    def action_stop_or_leave_input(self) -> None:
        """Esc stops a reply or a download; when there is none, the App's Esc leaves the message box so its
        one-letter keys (h, m, p, t, ...) work again (Enter or a click goes back to typing)."""
        if self.generating:
            self.action_stop()
        elif self.downloading is not None:
            self._download_cancel.set()

    def on_key(self, event: events.Key) -> None:
        if event.key == "enter" and not isinstance(self.focused, Input):
            self.set_focus(self.query_one("#chat-input", Input))
            event.stop()
        else:
            type_into_focused_box(self, event)

    def action_stop(self) -> None:
        if self.generating and self.model_worker is not None:
            self.model_worker.stop()

    @on(Button.Pressed, "#chat-stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    @on(Button.Pressed, "#chat-new")
    def _new_pressed(self) -> None:
        self.action_new_chat()

    def action_new_chat(self) -> None:
        self.action_stop()
        self._clear_conversation()
        self.set_focus(self.query_one("#chat-input", Input))

    def _clear_conversation(self) -> None:
        if self._reply is not None:
            self._reply.streaming = False
        self.history.clear()
        self._reply = None
        self._load_errors.clear()
        self.query_one(ChatLog).clear_messages()
        self.query_one(ChatStatsBar).tokens = 0

    def action_system_prompt(self) -> None:
        box = self.query_one("#chat-system", Collapsible)
        box.collapsed = not box.collapsed
        # the box that is open gets the keys (a hidden box keeps none: typing would fire screen keys)
        self.set_focus(self.query_one("#chat-system-input" if not box.collapsed else "#chat-input", Input))

    def action_reload(self) -> None:
        if self.generating:
            self.notify("Stop the answer first (Esc).", severity="warning")
            return
        cfg = self.active_config()
        if cfg is not None:
            self._loading_config = self._failed_config = None
            self.start_load(cfg)


def _is_proxy(info: ModelInfo | None, config: RunConfig) -> bool:
    """A model `moetui proxy` wrote (its general.name ends in "moetui proxy", see model/proxy.py): random
    weights, so the reply is noise and the user should be told so."""
    return info is not None and info.name.endswith("moetui proxy") and info.path == config.model_path


def _placement(config: RunConfig) -> str:
    """'all on GPU', 'CPU only' or 'experts of 12 layers in RAM', from the config itself."""

    if config.n_gpu_layers == 0:
        return "CPU only"
    try:
        layers = layers_from_overrides(config.overrides)
    except Exception:  # noqa: BLE001 - a hand-written override the parser does not know: say so plainly
        layers = None
    if layers:
        return f"experts of {len(layers)} layers in RAM"
    if config.overrides:
        return f"{len(config.overrides)} tensor overrides"
    return "all layers on GPU" if config.n_gpu_layers < 0 else f"{config.n_gpu_layers} layers on GPU"
