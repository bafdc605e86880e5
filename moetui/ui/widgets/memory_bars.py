"""Memory bars per device for a Plan: weights / KV / compute+runtime buffers against the device's budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from moetui.ui.widgets.format import gib

if TYPE_CHECKING:
    from moetui.sizing.plan import Plan

# glyph + style per part, so the bars read in monochrome terminals and snapshots too
PARTS = (("weights", "█", "dodger_blue2"), ("kv", "▓", "magenta"), ("buffers", "▒", "dark_orange"))
LABEL_WIDTH = 6


class MemoryBars(Widget):
    DEFAULT_CSS = "MemoryBars { height: auto; }"

    plan: reactive[Plan | None] = reactive(None, layout=True)

    def render(self) -> Text:
        p = self.plan
        if p is None:
            return Text("no plan yet", style="dim")
        width = max(10, self.size.width - LABEL_WIDTH - 22)
        out = Text()
        devices = sorted(p.memory, key=lambda d: (d == "CPU", d))  # GPUs first, RAM last
        for d in devices:
            m = p.memory[d]
            budget = p.budgets.get(d, 0) or m.total or 1
            scale = width / max(budget, m.total, 1)
            out.append(f"{('RAM' if d == 'CPU' else d)[:LABEL_WIDTH]:<{LABEL_WIDTH}}")
            used = 0
            for (name, glyph, style), n in zip(PARTS, (m.weights, m.kv, m.compute + m.overhead)):
                cells = round(n * scale)
                if n and not cells:
                    cells = 1  # a part that exists is never invisible
                cells = min(cells, width - used)
                out.append(glyph * cells, style=style)
                used += cells
            out.append("░" * (width - used), style="dim")
            over = m.total > budget
            out.append(f" {gib(m.total)} / {gib(budget)}", style="bold red" if over else "")
            out.append("\n")
        out.append(" " * LABEL_WIDTH)
        for name, glyph, style in PARTS:
            out.append(glyph, style=style)
            out.append(f" {name}  ")
        return out

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[override]
        return (len(self.plan.memory) + 1) if self.plan is not None else 1
