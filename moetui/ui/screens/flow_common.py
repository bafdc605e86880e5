"""Helpers the flow screens (Chat, Tune, Best config) share: the stylesheet path, calling back into the
UI from a worker thread when the app may already be gone, and opening another screen by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget

from moetui.paths import assets_dir
from moetui.ui.state import AppState

FLOWS_TCSS = str(assets_dir() / "flows.tcss")


def ui_call(app: App, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """`app.call_from_thread`, but False instead of an exception when the app has stopped or the screen
    that owns `fn` is being torn down (a worker thread that outlives its screen must wind down quietly,
    not fail the app with a traceback over the user's shell)."""
    owner = getattr(fn, "__self__", None)

    def guarded() -> bool:
        if isinstance(owner, Widget) and not owner.is_attached:
            return False
        try:
            fn(*args, **kwargs)
        except NoMatches:
            closing = getattr(owner, "_closing", False) or getattr(owner, "_closed", False)
            if app.is_running and not closing:
                raise  # a live screen missing a widget is a bug: let it show
            return False  # the app or screen is closing and its widgets are already gone
        return True

    try:
        return bool(app.call_from_thread(guarded))
    except RuntimeError:
        return False


def open_screen(app: App, name: str, factory: Callable[[], Screen]) -> None:
    """Show the app's screen `name` through MoetuiApp.action_open (screens installed lazily by name); in a
    host app without it, switch to an installed screen of that name or push a fresh one from `factory`."""
    opener = getattr(app, "action_open", None)
    if callable(opener) and getattr(app, "screen_named", None) is not None and app.screen_named(name) is not None:  # type: ignore[attr-defined]
        opener(name)
        return
    if app.is_screen_installed(name):
        app.switch_screen(name)
    else:
        app.push_screen(factory())


def app_state(app: App) -> Any:
    """The app's AppState; a bare one for a host app that has none (the flows then say what is missing)."""
    state = getattr(app, "state", None)
    if state is None:
        state = AppState()
        app.state = state  # type: ignore[attr-defined]
    return state


def release_model_workers(app: App) -> None:
    """Ask every screen that holds a model process (Chat) to let it go, before the tuner measures. UI thread."""
    screens = list(app.screen_stack)
    for name in ("chat",):
        if app.is_screen_installed(name):
            screens.append(app.get_screen(name))
    for screen in {id(s): s for s in screens}.values():
        release = getattr(screen, "release_worker", None)
        if callable(release) and screen.is_mounted:
            release()
