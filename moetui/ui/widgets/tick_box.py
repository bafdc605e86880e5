"""A checkbox that reads as its state: an empty box when off, a tick when on. Textual's Checkbox draws an
X in both states and only changes its colour, so "Retune" looked ticked whether it was or not."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class TickBox(Checkbox):
    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "✔" if self.value else " "  # an instance attribute over the class's "X"
        return super()._button
