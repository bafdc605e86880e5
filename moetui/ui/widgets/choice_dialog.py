"""A modal that ends a flow step with choices instead of a wall of text: a title, one or two lines, an
optional short table, and a row of buttons; it returns the key of the button pressed (None: closed)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static


class ChoiceDialog(ModalScreen[str | None]):
    DEFAULT_CSS = """
    ChoiceDialog { align: center middle; }
    ChoiceDialog > Vertical { width: 96%; max-width: 110; height: auto; max-height: 95%;
        border: thick $warning; background: $surface; padding: 0 1; }
    ChoiceDialog #choice-title { text-style: bold; color: $warning; }
    ChoiceDialog DataTable { height: auto; max-height: 8; margin-top: 1; }
    ChoiceDialog #choice-buttons { layout: grid; grid-size: 2; grid-gutter: 0 1; grid-rows: 3;
        height: auto; margin-top: 1; }
    ChoiceDialog #choice-buttons Button { width: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, message: str, choices: list[tuple[str, str]],
                 columns: list[str] | None = None, rows: list[list[str]] | None = None) -> None:
        """choices: (key, button label), first one focused; columns/rows: the short table, if any."""
        super().__init__()
        self.title_text = title
        self.message = message
        self.choices = choices
        self.columns = columns or []
        self.rows = rows or []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="choice-title")
            yield Static(self.message, id="choice-message", markup=False)
            if self.columns:
                yield DataTable(id="choice-table", cursor_type="none", zebra_stripes=True)
            with Container(id="choice-buttons"):  # two buttons a row: fits 80 columns
                for key, label in self.choices:
                    yield Button(label, id=f"choice-{key}", variant="primary" if key == self.choices[0][0] else "default")
                yield Button("Close", id="choice-close")

    def on_mount(self) -> None:
        if self.columns:
            table = self.query_one(DataTable)
            table.add_columns(*self.columns)
            for row in self.rows:
                table.add_row(*row)
        self.query_one(Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        key = (event.button.id or "").removeprefix("choice-")
        self.dismiss(None if key == "close" else key)

    def action_close(self) -> None:
        self.dismiss(None)
