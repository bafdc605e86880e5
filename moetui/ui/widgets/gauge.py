"""A one-line gauge: `label  ███████░░░  12.3 / 24.0 GiB  51%`. Attributes down: set `value`/`total`."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from moetui.ui.widgets.format import bar, gib

LABEL_WIDTH = 10
TAIL_WIDTH = 24


class Gauge(Widget):
    """`unit` "bytes" shows GiB, "pct" a percentage of 100. value None: not measurable here ("n/a")."""

    DEFAULT_CSS = "Gauge { height: 1; }"

    value: reactive[float | None] = reactive(None)
    total: reactive[float | None] = reactive(None)
    label: reactive[str] = reactive("")

    def __init__(self, label: str, unit: str = "bytes", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.set_reactive(Gauge.label, label)
        self.unit = unit

    def render(self) -> Text:
        width = max(4, self.size.width - LABEL_WIDTH - TAIL_WIDTH - 2)
        text = Text(f"{self.label[:LABEL_WIDTH]:<{LABEL_WIDTH}} ")
        if self.value is None or not self.total:
            text.append("n/a", style="dim")
            return text
        frac = self.value / self.total
        style = "red" if frac > 0.9 else ("yellow" if frac > 0.75 else "green")
        text.append(bar(frac, width), style=style)
        tail = (f"{self.value:.0f}%" if self.unit == "pct"
                else f"{gib(self.value)} / {gib(self.total)} {frac:4.0%}")
        text.append(f" {tail}")
        return text
