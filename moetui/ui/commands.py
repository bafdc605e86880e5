"""The command palette (ctrl+p): the App's commands plus those of the screen it was opened on.

A screen's palette entries are read from its own key bindings, so a screen cannot grow a key that the
palette misses (or a palette entry without a key): the entry runs the very action the key runs, and its
help names the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen


class PaletteCommand(NamedTuple):
    title: str
    callback: Callable[[], Any]
    help: str


def screen_commands(screen: Screen, screen_title: str) -> list[PaletteCommand]:
    """One command per shown binding of `screen` itself (not its widgets', not the App's), titled
    'Screen: what it does' and with the key in its help."""
    app = screen.app
    out: list[PaletteCommand] = []
    seen: set[str] = set()
    # the screen's own map (Textual keeps it in `_bindings`), not `active_bindings`: the latter drops a key
    # that the focused widget shadows, and the palette should list the screen's actions wherever focus is
    for _, b in screen._bindings:
        # app.* actions are the App's own commands, listed once with the App's titles
        if not b.show or not b.description or b.action.startswith("app."):
            continue
        if b.action in seen:  # one entry per action, even when two keys run it
            continue
        seen.add(b.action)
        help = f"[{app.get_key_display(b)}]" + (f" {b.tooltip}" if b.tooltip else "")
        out.append(PaletteCommand(f"{screen_title}: {b.description}", partial(app.run_action, b.action, screen),
                                  help))
    return out


class MoetuiCommands(Provider):
    """Every screen and app action in the command palette, same callbacks as the keys."""

    def _commands(self) -> list[PaletteCommand]:
        app: Any = self.app
        commands: Iterable[PaletteCommand] = app.app_commands()
        title = app.screen_title(self.screen)
        if title is not None:
            commands = [*commands, *screen_commands(self.screen, title)]
        return list(commands)

    async def discover(self) -> Hits:
        for c in self._commands():
            yield DiscoveryHit(c.title, c.callback, help=c.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for c in self._commands():
            score = matcher.match(c.title)
            if score > 0:
                yield Hit(score, matcher.highlight(c.title), c.callback, help=c.help)
