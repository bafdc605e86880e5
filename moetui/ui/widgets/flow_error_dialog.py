"""A modal that shows an error the user can act on (a worker crash, out of memory, a model that does not
fit, a cut download): the one-line message and, when there is one, the tail of llama.cpp's log."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from moetui.errors import in_words


class FlowErrorDialog(ModalScreen[None]):
    DEFAULT_CSS = """
    FlowErrorDialog { align: center middle; }
    FlowErrorDialog > Vertical { width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: thick $error; background: $surface; padding: 0 1; }
    FlowErrorDialog #flow-error-title { text-style: bold; color: $error; }
    FlowErrorDialog #flow-error-log { height: auto; max-height: 12; border: round $panel; }
    FlowErrorDialog Button { margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_dialog", "Close")]

    def __init__(self, title: str, message: str, log_tail: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.log_tail = log_tail

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="flow-error-title")
            yield Static(self.message, id="flow-error-message", markup=False)
            if self.log_tail.strip():
                with VerticalScroll(id="flow-error-log"):
                    yield Static(self.log_tail.strip()[-4000:], markup=False)
            yield Button("Close", id="flow-error-close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#flow-error-close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_dismiss_dialog(self) -> None:
        self.dismiss(None)


def show_error(screen_or_app, title: str, exc: BaseException) -> None:  # type: ignore[no-untyped-def]
    """Open the dialog (no toast as well: the same words twice read as two errors). Call on the UI thread."""
    app = getattr(screen_or_app, "app", screen_or_app)
    message = in_words(exc)
    app.push_screen(FlowErrorDialog(title, message, getattr(exc, "log_tail", "") or ""))
