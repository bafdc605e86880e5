"""The placement drawn layer by layer: one column per layer, one row per tensor group (the layer's
non-expert tensors, then each routed-expert part), each cell showing the device it lives on.
Wraps to the widget's width so a 94-layer model still fits at 80 columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

if TYPE_CHECKING:
    from moetui.sizing.plan import LayerSummary, Plan

LABEL_WIDTH = 9
GPU_STYLES = ("green3", "dodger_blue2", "medium_purple2", "cyan3")
CPU_STYLE = "dark_orange"


def cell(device: str) -> tuple[str, str]:
    """(glyph, style) for a device: solid for GPUs (colour per card), a lighter shade for RAM."""
    if device == "CPU":
        return "▒", CPU_STYLE
    digits = "".join(ch for ch in device if ch.isdigit())
    return "█", GPU_STYLES[int(digits or 0) % len(GPU_STYLES)]


def rows_for(layers: list[LayerSummary]) -> list[tuple[str, list[str | None]]]:
    """(row label, device per layer or None where the layer has no such tensor)."""
    parts = sorted({p for ly in layers for p in (*ly.experts_gpu, *ly.experts_cpu)})
    rows: list[tuple[str, list[str | None]]] = [("attn+", [ly.device for ly in layers])]
    for part in parts:
        devs: list[str | None] = []
        for ly in layers:
            if part in ly.experts_cpu:
                devs.append("CPU")
            elif part in ly.experts_gpu:
                devs.append(ly.device)
            else:
                devs.append(None)
        rows.append((f"exp.{part}", devs))
    return rows


class PlacementMap(Widget):
    DEFAULT_CSS = "PlacementMap { height: auto; }"

    plan: reactive[Plan | None] = reactive(None, layout=True)

    def _per_line(self, width: int) -> int:
        return max(8, width - LABEL_WIDTH)

    def render(self) -> Text:
        p = self.plan
        if p is None or not p.layers:
            return Text("no plan yet", style="dim")
        rows = rows_for(p.layers)
        n = len(p.layers)
        step = self._per_line(self.size.width)
        out = Text()
        for start in range(0, n, step):
            stop = min(n, start + step)
            ruler = "".join(str(i // 10 % 10) if i % 10 == 0 else "·" for i in range(start, stop))
            out.append(f"{'layer':<{LABEL_WIDTH}}{ruler}\n", style="dim")
            for label, devs in rows:
                out.append(f"{label[:LABEL_WIDTH - 1]:<{LABEL_WIDTH}}")
                for d in devs[start:stop]:
                    if d is None:
                        out.append(" ")
                    else:
                        glyph, style = cell(d)
                        out.append(glyph, style=style)
                out.append("\n")
        devices = sorted({d for _, devs in rows for d in devs if d}, key=lambda d: (d == "CPU", d))
        for d in devices:
            glyph, style = cell(d)
            out.append(glyph * 2, style=style)
            out.append(f" {'RAM (CPU)' if d == 'CPU' else d}  ")
        return out

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[override]
        p = self.plan
        if p is None or not p.layers:
            return 1
        blocks = -(-len(p.layers) // self._per_line(width))
        return blocks * (1 + len(rows_for(p.layers))) + 1
