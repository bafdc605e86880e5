"""Serve: the active config served as an OpenAI-compatible API by llama.cpp's own llama-server
(moetui.export.serving, the supervisor `moetui serve` uses), with live figures from its /metrics and /slots.

A thread worker starts the server, waits for /health and then polls once a second; it posts typed messages
(ServeEvent for the supervisor's events, ServeStarted / ServeFailed, StatsPolled), and the screen draws
them: the URL and model name, a snippet to copy, a per-request table and a decode tok/s sparkline. The
server stops with the Stop key and when the app closes (the screen's unmount), never outliving it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Sparkline, Static

from moetui.config import RunConfig
from moetui.errors import MoetuiError, first_line
from moetui.export.server_stats import ServerStats, StatsPoller, rate
from moetui.export.serving import Endpoint, ServeOptions, ServerEvent, ServerSupervisor, client_snippets
from moetui.paths import assets_dir
from moetui.ui.state import app_state

POLL_S = 1.0
HISTORY = 60  # sparkline points: the last minute


@dataclass
class ServeEvent(Message, bubble=False):
    event: ServerEvent


@dataclass
class ServeStarted(Message, bubble=False):
    endpoint: Endpoint


@dataclass
class ServeFailed(Message, bubble=False):
    error: MoetuiError


@dataclass
class StatsPolled(Message, bubble=False):
    stats: ServerStats


class ServeScreen(Screen):
    CSS_PATH = str(assets_dir() / "serve.tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        Binding("x", "stop_server", "Stop"),
        Binding("y", "copy", "Copy snippet"),
    ]

    status_line: reactive[str] = reactive("Stopped. Start (s) serves the config in force.", init=False)
    serving: reactive[bool] = reactive(False, init=False)

    def __init__(self, *, options: ServeOptions | None = None, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.options = options or ServeOptions()
        self.supervisor: ServerSupervisor | None = None
        self.endpoint: Endpoint | None = None
        self.last_stats: ServerStats | None = None
        self.served: dict[int, tuple[int | None, int | None]] = {}  # task -> (prompt, generated): every request seen
        self.rates: list[float] = []
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static(self.status_line, id="serve-title", markup=False)
        with Horizontal(id="serve-controls"):
            yield Button("Start", id="serve-start", variant="success")
            yield Button("Stop", id="serve-stop", variant="error", disabled=True)
            yield Button("Copy snippet", id="serve-copy", disabled=True)
        yield Static("", id="serve-snippet", markup=False)
        yield Static("", id="serve-figures", markup=False)
        yield Sparkline([0.0], id="serve-sparkline")
        table: DataTable[str] = DataTable(id="serve-requests", cursor_type="row")
        table.add_columns("request", "slot", "state", "prompt", "generated", "tok/s")
        yield table
        yield Footer()

    # --- actions ---------------------------------------------------------------------------------
    def active_config(self) -> RunConfig | None:
        active = app_state(self.app).active(defaults=True)
        return active.config if active else None

    @on(Button.Pressed, "#serve-start")
    def action_start(self) -> None:
        if self.supervisor is not None:
            return
        cfg = self.active_config()
        if cfg is None:
            self.status_line = "No model selected: pick one (m) or run Best config (b)."
            return
        self._stop = threading.Event()
        self.supervisor = ServerSupervisor(cfg, self.options, on_event=lambda ev: self.post_message(ServeEvent(ev)))
        self.status_line = "Starting llama-server …"
        self.query_one("#serve-start", Button).disabled = True
        self.query_one("#serve-stop", Button).disabled = False
        self._serve(self.supervisor, self._stop)

    @on(Button.Pressed, "#serve-stop")
    def action_stop_server(self) -> None:
        sup, self.supervisor = self.supervisor, None
        if sup is None:
            return
        self._stop.set()
        self.serving = False
        self.status_line = "Stopping llama-server …"
        threading.Thread(target=sup.stop, name="moetui-serve-stop", daemon=True).start()

    @on(Button.Pressed, "#serve-copy")
    def action_copy(self) -> None:
        if self.endpoint is None:
            self.notify("nothing to copy: the server is not running", severity="warning")
            return
        self.app.copy_to_clipboard(client_snippets(self.endpoint)["python"])  # OSC 52
        self.notify("Python snippet copied (terminals without OSC 52 support ignore it)", timeout=4)

    # --- the thread worker -----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="serve")
    def _serve(self, sup: ServerSupervisor, stop: threading.Event) -> None:
        try:
            ep = sup.start()
        except MoetuiError as exc:
            self.post_message(ServeFailed(exc))
            return
        poller = StatsPoller(ep.base_url, ep.api_key, ep.pid)
        poller.poll()  # the counters' baseline, before any client can know the URL
        self.post_message(ServeStarted(ep))
        while not stop.wait(POLL_S) and sup.gave_up is None:
            if sup.running:
                poller.pid = sup.proc.pid if sup.proc else None
                self.post_message(StatsPolled(poller.poll()))

    def on_serve_event(self, message: ServeEvent) -> None:
        ev = message.event
        if ev.kind in ("died", "restarting", "gave_up"):
            self.notify(ev.message, severity="error" if ev.kind != "restarting" else "warning", timeout=6)
        if ev.kind == "gave_up":
            self.supervisor = None
            self._stopped(ev.message)
        elif ev.kind == "stopped" and self.supervisor is None:
            self._stopped("Stopped. Start (s) serves the config in force.")
        elif ev.kind != "stopped":
            self.status_line = ev.message

    def on_serve_started(self, message: ServeStarted) -> None:
        ep = self.endpoint = message.endpoint
        self.serving = True
        key = " · API key required" if ep.api_key else ""
        self.status_line = f"Serving {ep.model} at {ep.openai_url}{key} · {ep.version}"
        self.query_one("#serve-snippet", Static).update(client_snippets(ep)["python"])
        self.query_one("#serve-copy", Button).disabled = False

    def on_serve_failed(self, message: ServeFailed) -> None:
        self.supervisor = None
        self._stopped(f"Could not serve: {first_line(message.error, 200)}")

    def _stopped(self, why: str) -> None:
        self.serving = False
        self.endpoint = None
        self.status_line = why
        self.query_one("#serve-start", Button).disabled = False
        self.query_one("#serve-stop", Button).disabled = True
        self.query_one("#serve-copy", Button).disabled = True

    def on_stats_polled(self, message: StatsPolled) -> None:
        st = self.last_stats = message.stats
        self.query_one("#serve-figures", Static).update(st.line())
        if st.error:
            return
        self.rates = (self.rates + [st.decode_tok_s or 0.0])[-HISTORY:]
        self.query_one("#serve-sparkline", Sparkline).data = self.rates
        table = self.query_one("#serve-requests", DataTable)
        table.clear()
        for r in st.requests:
            self.served[r.task] = (r.n_prompt, r.n_decoded)
            table.add_row(str(r.task), str(r.slot), r.state, _count(r.n_prompt), _count(r.n_decoded), rate(r.decode_tok_s))

    def watch_status_line(self, value: str) -> None:
        self.query_one("#serve-title", Static).update(value)

    def on_unmount(self) -> None:
        self._stop.set()
        sup, self.supervisor = self.supervisor, None
        if sup is not None:
            sup.stop()  # the app is closing: the server goes with it, now


def _count(n: int | None) -> str:
    return "-" if n is None else str(n)
