"""A checklist of flow steps (Best config): each step pending, running, done, failed or skipped, with a
one-line detail. The screen sets steps; the widget renders."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

MARKS = {"pending": ("○", "dim"), "running": ("◐", "bold yellow"), "done": ("✓", "bold green"),
         "failed": ("✗", "bold red"), "skipped": ("–", "dim")}


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    status: str = "pending"
    detail: str = ""


class FlowChecklist(Widget):
    DEFAULT_CSS = """
    FlowChecklist { height: auto; padding: 0 1; }
    """

    steps: reactive[tuple[Step, ...]] = reactive(())

    def set_steps(self, steps: list[Step]) -> None:
        self.steps = tuple(steps)

    def set_step(self, key: str, status: str | None = None, detail: str | None = None) -> None:
        self.steps = tuple(
            replace(s, status=status if status is not None else s.status, detail=detail if detail is not None else s.detail)
            if s.key == key else s for s in self.steps)

    def status(self, key: str) -> str | None:
        return next((s.status for s in self.steps if s.key == key), None)

    def render(self) -> Text:
        out = Text()
        for i, s in enumerate(self.steps):
            mark, style = MARKS.get(s.status, ("?", ""))
            if i:
                out.append("\n")
            out.append(f"{mark} ", style=style)
            out.append(s.title, style="bold" if s.status == "running" else "")
            if s.detail:
                out.append(f"  {s.detail}", style="dim" if s.status != "failed" else "red")
        return out
