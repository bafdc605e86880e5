"""The moetui terminal app: screens by name (installed lazily, so a screen that fails to import costs only
that screen), one key and one command-palette entry per screen and per action (moetui.ui.keys and
moetui.ui.commands), and the shared AppState.

Data flow: screens read the state through `app_state(self.app)` and post messages (moetui.ui.state) to
change it; the App updates the state and calls `refresh_from_state()` on the screens that define it.
Everything blocking (detection, model inspection, planning, the saved profile) runs in thread workers that
report back with typed messages (moetui.ui.messages).
"""

from __future__ import annotations

import importlib
import threading
from functools import partial
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.worker import get_current_worker

from moetui.errors import MoetuiError, in_words
from moetui.hardware import detect_rig
from moetui.paths import assets_dir, state_notices
from moetui.ui.commands import MoetuiCommands, PaletteCommand
from moetui.ui.keys import APP_ACTIONS, SCREEN_KEYS, shown_as_symbols
from moetui.ui.messages import ModelUnreadable, PlanFailed, RigDetected, SavedProfileRead
from moetui.ui.state import (
    AppState, ConfigChosen, DownloadRequested, ModelSelected, PlanChanged, RigChanged, SettingsChanged, TuneCompleted,
)
from moetui.ui.selection import remember_model, remembered_missing, remembered_model
from textual.widgets import Input, TextArea

if TYPE_CHECKING:
    from moetui.hardware import Rig
    from moetui.model.info import ModelInfo
    from moetui.sizing.settings import Settings

ASSETS = assets_dir()

# name -> (module, class, key, title, help). Order = the order of the footer and the palette.
SCREENS_BY_NAME: dict[str, tuple[str, str, str, str, str]] = {
    "home": ("moetui.ui.screens.home", "HomeScreen", "h", "Home", "rig, selected model and the one-click best config"),
    "rig": ("moetui.ui.screens.rig", "RigScreen", "r", "Rig", "detected hardware, live VRAM/RAM/GPU gauges, llama.cpp build"),
    "models": ("moetui.ui.screens.models", "ModelsScreen", "m", "Models", "local GGUFs and catalog models with a fit verdict"),
    "plan": ("moetui.ui.screens.plan", "PlanScreen", "p", "Plan", "placement layer by layer, memory per device, knobs"),
    "tune": ("moetui.ui.screens.tune", "TuneScreen", "t", "Tune", "probe settings live and keep the fastest"),
    "chat": ("moetui.ui.screens.chat", "ChatScreen", "c", "Chat", "streaming chat with the chosen config"),
    "export": ("moetui.ui.screens.export", "ExportScreen", "e", "Export", "llama.cpp command lines and a Python snippet"),
    "serve": ("moetui.ui.screens.serve", "ServeScreen", "v", "Serve", "serve the model as an OpenAI-compatible API, live stats"),
    "best": ("moetui.ui.screens.best", "BestConfigScreen", "b", "Best config for my rig",
             "pick, download, plan, tune and chat in one click"),
}


class MoetuiApp(App):
    TITLE = "moetui"
    SUB_TITLE = "MoE models, as fast as your rig allows"
    CSS_PATH = [ASSETS / "moetui.tcss"]
    COMMANDS = App.COMMANDS | {MoetuiCommands}
    BINDINGS = [
        # Serve is on its key and in the palette, not in the footer's "screens" group (its width at 80 columns)
        *(Binding(key, f"open('{name}')", title.split(" ")[0] if name != "best" else "Best", group=SCREEN_KEYS,
                  show=name != "serve")
          for name, (_, _, key, title, _) in SCREENS_BY_NAME.items()),
        # hidden here, shown by the screens where they matter (app_action_bindings)
        *(Binding(key, action, label, show=False) for key, action, label, _, _ in APP_ACTIONS),
        Binding("q", "quit", "Quit"),
        Binding("escape", "unfocus", "Leave field"),  # back from a text field to the letter keys (check_action)
    ]

    def __init__(self, model_path: str | None = None, rig: Rig | None = None, *, detect: bool = True,
                 light: bool = False, remember: bool = True) -> None:
        """model_path: a GGUF path, shape preset or hub ref to select at start (inspected in a worker).
        rig: a reference or already-detected rig; None detects this machine in a worker (unless detect=False).
        remember: keep each selection in the data dir for the next start (run_app opens on it)."""
        super().__init__()
        self._remember = remember
        self.state = AppState(rig=rig, model_path=model_path)
        self._draft_info: tuple[str, ModelInfo] | None = None
        self._detect_enabled = detect
        self._stop = threading.Event()  # cancels the RAM bandwidth probe when the app quits mid-detection
        self._screens: dict[str, Screen] = {}
        if light:
            self.theme = "textual-light"

    # ---- screens ---------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.action_open("home")
        if self.state.rig is None and self._detect_enabled:
            self.detect()
        if self.state.model_path:
            self.select_model(self.state.model_path)
        self.set_interval(1.0, self._say_state_notices)

    def _say_state_notices(self) -> None:
        """Saved files found corrupt and moved aside (by any worker): said once, as a warning."""
        for notice in state_notices():
            self.notify(notice, title="A saved file was corrupt", severity="warning", timeout=10)

    def on_unmount(self) -> None:
        self._stop.set()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Paste) and not event.is_forwarded:
            event.text = shown_as_symbols(event.text)  # a pasted ESC byte would jumble the screen
        await super().on_event(event)

    def screen_named(self, name: str) -> Screen | None:
        """The installed screen `name`, importing and installing it on first use; None (and a notification)
        when it cannot be built. A screen installed with Textual's `install_screen(screen, name)` before
        first use is the one used (tests install a Tune or Best config screen with their own options)."""
        if name in self._screens:
            return self._screens[name]
        if name not in SCREENS_BY_NAME:
            self.notify(f"no screen named {name!r}", severity="error")
            return None
        module_name, class_name, _, title, _ = SCREENS_BY_NAME[name]
        if self.is_screen_installed(name):  # installed by the caller before first use (a test, a host app)
            screen = self.get_screen(name)
        else:
            try:
                screen = getattr(importlib.import_module(module_name), class_name)()
            except Exception as exc:  # a screen that fails to build (a bug, a broken install) must not take the app down
                self.notify(f"{title} is not available: {in_words(exc)}", title="Screen unavailable",
                            severity="warning")
                return None
            self.install_screen(screen, name)
        self._screens[name] = screen
        return screen

    def action_open(self, name: str) -> None:
        screen = self.screen_named(name)
        if screen is None or screen is self.screen:
            return
        if len(self.screen_stack) <= 1:  # only the default screen: keep it underneath
            self.push_screen(screen)
        else:
            self.switch_screen(screen)

    def refresh_screens(self) -> None:
        """Attributes down: every mounted screen that shows state redraws from it."""
        screens = {id(s): s for s in (*self._screens.values(), *self.screen_stack)}
        for s in screens.values():
            fn = getattr(s, "refresh_from_state", None)
            if fn is None or not s.is_mounted:
                continue
            try:
                fn()
            except Exception as exc:  # one screen's bug must not take the others down
                self.log.error(f"{s!r}.refresh_from_state failed: {exc!r}")
                self.notify(f"{self.screen_title(s) or type(s).__name__}: {in_words(exc)}", severity="error")

    def screen_title(self, screen: Screen) -> str | None:
        """'Tune' for the installed Tune screen; None for a screen moetui did not install (a dialog)."""
        for name, installed in self._screens.items():
            if installed is screen:
                return SCREENS_BY_NAME[name][3].split(" ")[0] if name != "best" else "Best config"
        return None

    def app_commands(self) -> list[PaletteCommand]:
        """The palette's app-wide commands: open each screen, then the other app actions; the help names
        the key."""
        out = [PaletteCommand(f"Open {title}" if name != "best" else title, partial(self.action_open, name),
                              f"[{key}] {help}")
               for name, (_, _, key, title, help) in SCREENS_BY_NAME.items()]
        out += [PaletteCommand(title, getattr(self, f"action_{action}"),
                               f"[{self.get_key_display(Binding(key, action))}] {help}")
                for key, action, _, title, help in APP_ACTIONS]
        return out

    def screen_text(self) -> str:
        """The current screen as plain text, line by line (tests and the tmux check compare against it)."""
        return "\n".join(strip.text for strip in self.screen._compositor.render_strips())

    # ---- actions ---------------------------------------------------------------------------------
    def format_title(self, title: str, sub_title: str) -> Content:
        """Title — sub-title, the sub-title in italics: Textual dims it, which reads at 3.4:1 in the light
        theme (under WCAG AA's 4.5:1)."""
        if not sub_title:
            return Content(title)
        return Content.assemble(Content(title), " — ", Content(sub_title).stylize("italic"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """"Leave field" (Esc) exists, and shows in the footer, only while a text box has the focus: the
        way back to the letter keys is always on screen, and Esc elsewhere stays free for the screens."""
        if action == "unfocus":
            return isinstance(self.focused, (Input, TextArea))
        return True

    def action_unfocus(self) -> None:
        self.screen.set_focus(None)

    def action_redetect(self) -> None:
        self.detect()

    def action_replan(self) -> None:
        self.request_plan()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    # ---- messages (up) -> state -> screens (down) -----------------------------------------------
    def on_rig_changed(self, msg: RigChanged) -> None:
        self.state.rig = msg.rig
        self.state.tuned = self.state.config = None  # tuned for another rig: not this one's
        self._load_tuned()
        self.refresh_screens()
        self.request_plan()

    def on_download_requested(self, msg: DownloadRequested) -> None:
        """Models' Download key: Chat owns downloads (its status line shows the progress, then it loads)."""
        chat = self.screen_named("chat")
        if chat is None:
            return
        if chat.downloading is not None and chat.downloading != msg.ref:
            self.notify(f"{chat.downloading} is downloading: one at a time (Esc on Chat cancels it)",
                        title="A download is running", severity="warning")
            return
        if chat.downloading is None:
            chat.download_now(msg.ref)
        self.action_open("chat")

    def on_model_selected(self, msg: ModelSelected) -> None:
        if msg.info is None:
            self.select_model(msg.path)
            return
        s = self.state
        s.model_path, s.model_info = msg.path, msg.info
        s.plan = s.tuned = s.config = None
        if self._remember:
            remember_model(msg.path)
        s.model_error = s.plan_error = s.loading_model = None
        self._load_tuned()
        self.refresh_screens()
        self.request_plan()

    def on_settings_changed(self, msg: SettingsChanged) -> None:
        self.request_plan(msg.settings)
        self.refresh_screens()

    def on_plan_changed(self, msg: PlanChanged) -> None:
        self.state.plan = msg.plan
        self.state.plan_error = None
        self.state.planning = False
        self.refresh_screens()

    def on_tune_completed(self, msg: TuneCompleted) -> None:
        self.state.tuned = msg.result
        best = getattr(msg.result, "best", None)
        if best is not None and getattr(best, "config", None) is not None:
            self.state.config = best.config
        self.refresh_screens()

    def on_config_chosen(self, msg: ConfigChosen) -> None:
        self.state.config = msg.config
        self.refresh_screens()

    def _load_tuned(self) -> None:
        """A profile tuned earlier for this rig and model (the tuner's store) becomes the active config."""
        s = self.state
        if s.rig is not None and s.model_info is not None and s.model_info.identity:
            self._tuned_worker(s.rig, s.model_info, s.model_path)

    @work(thread=True, exclusive=True, group="tuned", exit_on_error=False)
    def _tuned_worker(self, rig: Rig, info: ModelInfo, model_path: str | None) -> None:
        from moetui.resolver import saved_profile  # gguf: not at the app's start

        try:
            saved = saved_profile(rig, info.identity, model_path)
        except Exception as exc:  # a damaged profile must not stop the app: it just is not used
            self.post_message(SavedProfileRead(model_path, error=exc))
            return
        if saved is not None and not get_current_worker().is_cancelled:
            self.post_message(SavedProfileRead(model_path, saved))

    def on_saved_profile_read(self, msg: SavedProfileRead) -> None:
        if msg.error is not None:
            self.log.warning(f"tuned profile lookup failed: {msg.error!r}")
        elif msg.result is not None and self.state.model_path == msg.model_path:  # still the same selection
            self.post_message(TuneCompleted(msg.result))

    # ---- workers ---------------------------------------------------------------------------------
    def detect(self) -> None:
        self.state.detecting = True
        self.refresh_screens()
        self._detect_worker()

    @work(thread=True, exclusive=True, group="detect", exit_on_error=False)
    def _detect_worker(self) -> None:
        try:
            rig = detect_rig(stop=self._stop)
        except Exception as exc:  # detection is best effort by design; a bug here must not kill the UI
            self.post_message(RigDetected(error=exc))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(RigDetected(rig))

    def on_rig_detected(self, msg: RigDetected) -> None:
        self.state.detecting = False
        if msg.rig is not None:
            self.post_message(RigChanged(msg.rig))
            return
        self.notify(in_words(msg.error), title="Rig detection failed", severity="error", timeout=8)
        self.refresh_screens()

    def select_model(self, path: str) -> None:
        """Inspect `path` (GGUF path, shape preset or hub ref) in a worker, then select it."""
        # shown as "reading…" until the worker reports; the selection changes on success
        self.state.loading_model = path
        self.state.model_error = None
        self.refresh_screens()
        self._inspect_worker(path)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def _inspect_worker(self, path: str) -> None:
        from moetui.hub.resolve import resolve_model  # gguf and the hub client: not at the app's start

        try:
            info = resolve_model(path)
        except Exception as exc:
            self.post_message(ModelUnreadable(path, exc))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(ModelSelected(path, info))

    def on_model_unreadable(self, msg: ModelUnreadable) -> None:
        s = self.state
        s.loading_model = None
        # MoetuiErrors name the file already; anything else gets the path and the exception type
        s.model_error = str(msg.error) if isinstance(msg.error, MoetuiError) else f"{msg.path}: {in_words(msg.error)}"
        self.notify(s.model_error, title="Cannot use this model",
                    severity="error", timeout=8)
        self.refresh_screens()

    def request_plan(self, settings: Settings | None = None) -> None:
        """Plan the selection for the rig with `settings` (default: the current ones, else they become the
        current ones) in a worker; the newest request wins. Does nothing until a rig and a model are known."""
        s = self.state
        if settings is not None:
            s.settings = settings
        if s.rig is None or s.model_info is None:
            return
        s.planning = True
        self._plan_worker(s.model_info, s.rig, s.settings, s.model_path)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def _plan_worker(self, info: ModelInfo, rig: Rig, settings: Settings, model_path: str | None) -> None:
        from moetui.resolver import plan_for  # gguf: not at the app's start

        try:
            draft = self._draft(settings.draft_path) if settings.draft_path else None
            result = plan_for(info, rig, settings, model_path, draft)  # with the efficiency a tune measured here
        except Exception as exc:
            if not get_current_worker().is_cancelled:
                self.post_message(PlanFailed(exc))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(PlanChanged(result))

    def _draft(self, path: str) -> ModelInfo:
        """The draft model's ModelInfo, read once per path (worker thread)."""
        from moetui.hub.resolve import resolve_model  # gguf and the hub client: not at the app's start

        if self._draft_info is None or self._draft_info[0] != path:
            self._draft_info = (path, resolve_model(path))
        return self._draft_info[1]

    def on_plan_failed(self, msg: PlanFailed) -> None:
        s = self.state
        s.planning = False
        s.plan = None
        s.plan_error = in_words(msg.error)
        if not getattr(self.screen, "SHOWS_PLAN_ERRORS", False):  # the Plan screen shows it inline
            self.notify(s.plan_error, title="No plan", severity="error", timeout=8)
        self.refresh_screens()


def run_app(model_path: str | None = None, rig: Rig | None = None) -> None:
    """The app as `moetui` opens it: on `model_path`, else on the model selected last time."""
    start_app(model_path, rig).run()


def start_app(model_path: str | None = None, rig: Rig | None = None) -> MoetuiApp:
    """The app `moetui` runs, not yet running: on `model_path`, else on the model selected last time; when
    that one was a file that has vanished since, nothing is selected and Home says so."""
    missing = None
    if model_path is None:
        model_path = remembered_model()
        missing = None if model_path else remembered_missing()
    app = MoetuiApp(model_path=model_path, rig=rig)
    if missing:
        app.state.model_error = missing_model_text(missing)
    return app


def missing_model_text(path: str) -> str:
    return f"the model selected last time is no longer there: {path} (moved or deleted); press m to pick one"
