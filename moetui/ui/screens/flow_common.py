"""Helpers the flow screens (Chat, Tune, Best config) share: the stylesheet path, opening another screen by
name, and letting go of model processes."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import App
from textual.screen import Screen

from moetui.paths import assets_dir

FLOWS_TCSS = str(assets_dir() / "flows.tcss")


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
