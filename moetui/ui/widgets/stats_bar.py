"""The Chat screen's live stats bar: decode speed (instant and average), tokens, prompt speed, VRAM,
RSS, expert tensors in RAM and draft acceptance. Attributes down: the screen sets the reactives from the
worker's StatsEvents and from its 2 Hz sampler; the bar only renders."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from moetui.ui.widgets.flow_format import fmt_rate
from moetui.ui.widgets.format import gib


class ChatStatsBar(Widget):
    DEFAULT_CSS = """
    ChatStatsBar { height: 2; padding: 0 1; }
    """

    phase: reactive[str] = reactive("idle")
    decode_tps: reactive[float | None] = reactive(None)
    decode_tps_avg: reactive[float | None] = reactive(None)
    prompt_tps: reactive[float | None] = reactive(None)
    tokens: reactive[int] = reactive(0)
    vram_bytes: reactive[int | None] = reactive(None)
    vram_scope: reactive[str] = reactive("")  # "proc" (this worker, NVML) | "gpu" (whole GPU) | ""
    rss_bytes: reactive[int | None] = reactive(None)
    uses_gpu: reactive[bool] = reactive(True)  # False on a CPU-only rig or config: no VRAM figure to show
    experts_ram: reactive[int] = reactive(0)
    experts_total: reactive[int] = reactive(0)
    acceptance: reactive[float | None] = reactive(None)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.samples = 0  # updates received; plain (not reactive): counting must not cost a repaint

    def clear_figures(self) -> None:
        """Another model: none of the last one's speeds or memory figures are this one's."""
        self.phase, self.tokens, self.experts_ram, self.experts_total = "idle", 0, 0, 0
        self.decode_tps = self.decode_tps_avg = self.prompt_tps = self.acceptance = None
        self.vram_bytes = self.rss_bytes = None
        self.vram_scope = ""

    def render(self) -> Text:
        t = Text()

        def part(label: str, value: str, style: str = "bold") -> None:
            if t:
                t.append(" · ", style="dim")
            t.append(f"{label} ", style="dim")
            t.append(value, style=style)

        part("tg", f"{fmt_rate(self.decode_tps)} t/s (avg {fmt_rate(self.decode_tps_avg)})", "bold underline")  # not green: 3.2:1 in the light theme
        part("tok", str(self.tokens))
        if self.prompt_tps is not None:
            part("pp", f"{fmt_rate(self.prompt_tps, 0)} t/s")
        if self.uses_gpu:
            vram = gib(self.vram_bytes)
            part("VRAM", vram + (" (GPU)" if self.vram_scope == "gpu" and self.vram_bytes is not None else ""))
        part("RAM" if not self.uses_gpu else "RSS", gib(self.rss_bytes))
        if self.experts_total:
            part("expert tensors in RAM", f"{self.experts_ram}/{self.experts_total}")
        if self.acceptance is not None:
            part("draft acc", f"{self.acceptance:.0%}")
        if self.phase not in ("idle", ""):
            part("", self.phase, "italic")
        return t
