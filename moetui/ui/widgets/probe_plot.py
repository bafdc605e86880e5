"""A bar chart of the objective (tok/s) per probe, newest on the right, best in a highlight colour and
failed probes as a red ✗. Rendered with eighth-blocks so 5 rows give 40 levels; no plotting dependency."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
BAR_W = 2  # columns per probe (bar + gap)


class ProbePlot(Widget):
    DEFAULT_CSS = """
    ProbePlot { height: 6; padding: 0 1; }
    """

    # (probe index, score or None, status); set the whole list to update (reactives compare by value)
    points: reactive[tuple[tuple[int, float | None, str], ...]] = reactive(())
    best_index: reactive[int | None] = reactive(None)

    def set_point(self, index: int, score: float | None, status: str) -> None:
        pts = [p for p in self.points if p[0] != index]
        pts.append((index, score, status))
        self.points = tuple(sorted(pts))

    def clear(self) -> None:
        self.points, self.best_index = (), None

    def render(self) -> Text:
        rows = max(1, self.size.height - 1)  # the last row is the axis label
        width = max(BAR_W, self.size.width)
        pts = list(self.points)[-(width // BAR_W):]  # the newest that fit
        scores = [s for _, s, _ in pts if s is not None]
        top = max(scores) if scores else 0.0
        lines = [Text() for _ in range(rows)]
        for index, score, status in pts:
            style = "bold green" if index == self.best_index else ("red" if status == "failed" else "cyan")
            if status == "failed" or (score is None and status not in ("running", "pending")):
                cells = [" "] * (rows - 1) + ["✗"]
            elif score is None or top <= 0:
                cells = [" "] * (rows - 1) + ["·"]
            else:
                eighths = max(1, round(score / top * rows * 8))
                cells = []
                for r in range(rows):  # r = 0 is the top row
                    level = eighths - (rows - 1 - r) * 8
                    cells.append(BLOCKS[max(0, min(8, level))])
            for r in range(rows):
                lines[r].append(cells[r], style=style)
                lines[r].append(" " * (BAR_W - 1))
        out = Text()
        for line in lines:
            out.append_text(line)
            out.append("\n")
        label = f"tok/s per probe, max {top:.1f}" if scores else "tok/s per probe (none measured yet)"
        out.append(label, style="dim")
        return out
