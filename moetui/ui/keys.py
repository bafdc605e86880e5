"""Keys shared by the App and its screens: the app-wide actions and where their keys show in the footer.

Every action has a key and a palette entry (moetui.ui.commands reads both from the bindings); the Footer at
80 columns has room for the screen's own keys plus a few, so the app-wide ones show only where they matter.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input

# app-wide actions besides the screens: (key, action, footer label, palette title, palette help). Upper case
# = "that screen's job again" (R for Rig, P for Plan). Shown in the footer on the screens listed in
# SHOWN_ON (where they matter; at 80 columns the footer has no room for them everywhere) and always in the
# palette; the keys work on every screen.
APP_ACTIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("R", "redetect", "Re-detect", "Re-detect the rig", "run hardware detection again"),
    ("P", "replan", "Re-plan", "Re-plan the selected model", "plan again with the current knobs"),
    ("ctrl+t", "toggle_theme", "Theme", "Toggle dark/light theme", "switch between the dark and light theme"),
)
SHOWN_ON: dict[str, tuple[str, ...]] = {"redetect": ("home", "rig"), "replan": ("home", "plan"),
                                        "toggle_theme": ("home",)}
SCREEN_KEYS = Binding.Group("screens")  # "h r m p t c e b screens": the names are on Home's buttons


def app_action_bindings(screen_name: str) -> list[Binding]:
    """The bindings a screen adds so that the app-wide actions that matter there show in its footer."""
    return [Binding(key, f"app.{action}", label, tooltip=help)
            for key, action, label, _, help in APP_ACTIONS if screen_name in SHOWN_ON.get(action, ())]


def shown_as_symbols(text: str) -> str:
    """Pasted text with its control bytes as the Unicode "control pictures" (ESC -> ␛, DEL -> ␡): a raw ESC
    drawn into a text box is read by the terminal as the start of a command and jumbles the screen. Line
    breaks and tabs stay (a multi-line box keeps its lines)."""
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 0x20 and c not in "\n\r\t" else "\u2421" if c == "\x7f" else c
                   for c in text)


def type_into_focused_box(screen: Screen, event: events.Key) -> bool:
    """A printable key that reached the screen while one of its text boxes has the focus was sent on before
    the focus moved there (keys typed fast, right after the screen opened or a box took the focus): it is
    text for that box, not a screen key. Call from the screen's on_key; True when the key was typed."""
    box = screen.focused
    if not (isinstance(box, Input) and event.is_printable and event.character and not box.disabled):
        return False
    box.insert_text_at_cursor(event.character)
    event.stop()
    event.prevent_default()
    return True
