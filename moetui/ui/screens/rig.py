"""Rig: the detected (or reference) hardware, live gauges at 2 Hz, bandwidths, the llama.cpp build's
backends and, when it cannot use the GPU, the rebuild hint. A Select switches to a reference rig so plans
answer "what if I had ..."."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Select, Static
from textual.worker import get_current_worker

from moetui.errors import MoetuiError, in_words
from moetui.hardware import Sampler, list_presets, load_preset
from moetui.hardware.bandwidth import bandwidth_how, bandwidth_words
from moetui.ui.keys import app_action_bindings
from moetui.ui.messages import SampleTaken, SamplerReady
from moetui.ui.state import RigChanged, app_state
from moetui.ui.widgets.format import gib
from moetui.ui.widgets.gauge import Gauge
from rich.markup import escape
from moetui.sizing.remote import remote_line

if TYPE_CHECKING:
    from moetui.hardware import Rig, Sample

SAMPLE_PERIOD_S = 0.5  # 2 Hz, as the issue asks; a sample is a few NVML calls + two psutil calls
DETECTED = "__detected__"


def rig_details(rig: Rig, now: float | None = None) -> str:
    """Rich markup for everything the sizing core uses from the rig, in plain words (`now`: the clock that
    says how long ago RAM bandwidth was measured; tests pass one)."""
    lines = [f"[b]{rig.name}[/b]  [$text-muted]({rig.source}{', ' + rig.os if rig.os else ''})[/]"]
    for i, g in enumerate(rig.gpus):
        bw = f", {g.mem_bandwidth_gbs:.0f} GB/s" if g.mem_bandwidth_gbs else ""
        link = (f", PCIe {g.pcie_bandwidth_gbs:.0f} GB/s" if g.pcie_bandwidth_gbs
                else (", unified memory" if g.unified_memory else ""))
        lines.append(f"GPU {i}  {g.name}: {gib(g.vram_total_bytes)} VRAM ({gib(g.vram_free_bytes)} free){bw}{link}"
                     + (f", CC {g.compute_capability}" if g.compute_capability else "")
                     + (", MIG on" if g.mig_enabled else ""))
    if not rig.gpus:
        lines.append("GPU    none found")
    c = rig.cpu
    lines.append(f"CPU    {c.model}: {c.physical_cores} cores / {c.logical_cores} threads, {c.arch}"
                 + (f", NUMA {c.numa_nodes}" if c.numa_nodes > 1 else ""))
    if c.flags:
        lines.append(f"       [$text-muted]{' '.join(c.flags[:12])}{' …' if len(c.flags) > 12 else ''}[/]")
    m = rig.memory
    ram_bw = bandwidth_words(rig.ram_bandwidth_gbs, rig.bandwidth_probe, rig.source, now=now)
    lines.append(f"RAM    {gib(m.total_bytes)} ({gib(m.available_bytes)} available), bandwidth {ram_bw}"
                 + (f", peak {m.theoretical_bandwidth_gbs:.0f} GB/s" if m.theoretical_bandwidth_gbs else ""))
    probe = rig.bandwidth_probe
    if probe is not None and rig.source == "detected" and rig.ram_bandwidth_gbs:
        lines.append(f"       [$text-muted]RAM bandwidth: {bandwidth_how(probe)}[/]")
        if probe.note:
            lines.append(f"       [$text-warning]{escape(probe.note)}[/]")
    b = rig.build
    if b.installed:
        lines.append(f"llama  llama-cpp-python {b.version or '?'}: backends {', '.join(b.backends) or '?'}; "
                     + (("[$text-success]GPU offload[/]" if rig.gpus else "can offload, but no GPU found: runs on the CPU")
                        if b.gpu_offload else "[$text-warning]CPU only[/]"))
    else:
        lines.append("llama  llama-cpp-python not read" if rig.source == "detected" else "llama  (reference rig)")
    if b.advice:
        lines.append(f"[$text-warning]{b.advice}[/]")
    if rig.remotes:  # RPC servers on other hosts (moetui detect --rpc): plans may place layers there
        lines += [f"remote {escape(remote_line(r))}" for r in rig.remotes]
    for w in rig.warnings:
        lines.append(f"[$text-muted]! {w}[/]")
    if rig.notes:
        lines.append(f"[$text-muted]{rig.notes}[/]")
    return "\n".join(lines)


class RigScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = app_action_bindings("rig")
    LIVE = True  # poll this machine's gauges; snapshot tests turn it off so the picture is deterministic
    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="rig-body"):
            with Horizontal(id="rig-top"):
                options = [("this machine (detected)", DETECTED)] + [(f"reference: {p}", p) for p in list_presets()]
                yield Select(options, id="rig-select", allow_blank=True, prompt="rig to plan for")
                yield Button("Re-detect", id="rig-redetect")
            with Vertical(id="rig-gauges"):
                yield Static("[b]Live[/b] [$text-muted](this machine, 2 Hz)[/]", id="rig-live-title")
                yield Gauge("RAM", id="gauge-ram")
                yield Gauge("CPU", unit="pct", id="gauge-cpu")
            yield Static(id="rig-details")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._sampler = None
        self._gpu_gauges: list[tuple[Gauge, Gauge]] = []
        self.refresh_from_state()
        if self.LIVE:
            self._start_sampler()
            self.set_interval(SAMPLE_PERIOD_S, self._tick)

    def on_unmount(self) -> None:
        if self._sampler is not None:
            self._sampler.close()

    def refresh_from_state(self) -> None:
        state = app_state(self.app)
        rig = state.rig
        if rig is None:
            text = "detecting this machine…" if state.detecting else "no rig yet: press Re-detect"
        else:
            text = rig_details(rig)
        self.query_one("#rig-details", Static).update(text)
        self._show_choice(rig)

    def _show_choice(self, rig: Rig | None) -> None:
        """The dropdown names the rig the details show (a reference picked here or elsewhere, or this
        machine), without that counting as a new pick."""
        select = self.query_one("#rig-select", Select)
        want = Select.BLANK if rig is None else DETECTED if rig.source != "preset" else self._preset_key(rig)
        if select.value != want:
            with select.prevent(Select.Changed):
                select.value = want

    def _preset_key(self, rig: Rig) -> object:
        if not hasattr(self, "_preset_keys"):  # the reference rigs' file names by fingerprint (a few TOML files)
            self._preset_keys: dict[str, str] = {}
            for key in list_presets():
                try:
                    self._preset_keys[load_preset(key).fingerprint or ""] = key
                except MoetuiError:
                    continue
        return self._preset_keys.get(rig.fingerprint or "", Select.BLANK)

    # ---- live gauges: the sampler is built and polled off the event loop ------------------------
    @work(thread=True, exclusive=True, group="sampler-init", exit_on_error=False)
    def _start_sampler(self) -> None:
        try:
            sampler = Sampler()
        except Exception as exc:  # the gauges are a nicety: show n/a, keep going
            self.post_message(SamplerReady(error=exc))
            return
        if not self.post_message(SamplerReady(sampler)):
            sampler.close()  # the screen is closing: nobody will sample

    def on_sampler_ready(self, msg: SamplerReady) -> None:
        if msg.sampler is None:
            self.notify(f"live gauges unavailable: {in_words(msg.error)}", severity="warning")
            return
        self._sampler = sampler = msg.sampler
        rig = app_state(self.app).rig
        if sampler.error and not (rig is not None and rig.source == "detected" and not rig.gpus):
            # a machine with no GPU has no GPU gauges to miss: say nothing of the driver there
            self.query_one("#rig-live-title", Static).update(
                f"[b]Live[/b] [$text-muted](this machine, 2 Hz; no GPU gauges: {escape(sampler.error)})[/]")

    def _tick(self) -> None:
        if self._sampler is not None and self.is_current:
            self._sample()

    @work(thread=True, exclusive=True, group="sampler", exit_on_error=False)
    def _sample(self) -> None:
        sample = self._sampler.sample()
        if not get_current_worker().is_cancelled:
            self.post_message(SampleTaken(sample))

    def on_sample_taken(self, msg: SampleTaken) -> None:
        self.show_sample(msg.sample)

    def show_sample(self, sample: Sample) -> None:
        """Attributes down: one VRAM and one utilization gauge per GPU, plus RAM and CPU."""
        box = self.query_one("#rig-gauges", Vertical)
        while len(self._gpu_gauges) < len(sample.gpus):
            i = len(self._gpu_gauges)
            pair = (Gauge(f"GPU{i} VRAM", id=f"gauge-vram-{i}"), Gauge(f"GPU{i} util", unit="pct", id=f"gauge-util-{i}"))
            box.mount(*pair, before=self.query_one("#gauge-ram"))
            self._gpu_gauges.append(pair)
        for (vram, util), g in zip(self._gpu_gauges, sample.gpus):
            vram.total, vram.value = g.vram_total_bytes, g.vram_used_bytes
            util.total, util.value = 100, g.util_gpu_pct
        ram = self.query_one("#gauge-ram", Gauge)
        if sample.ram_used_bytes is not None and sample.ram_available_bytes is not None:
            ram.total = sample.ram_used_bytes + sample.ram_available_bytes
            ram.value = sample.ram_used_bytes
        cpu = self.query_one("#gauge-cpu", Gauge)
        cpu.total, cpu.value = 100, sample.cpu_pct

    # ---- picking a rig ---------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "rig-redetect":
            self.app.action_redetect()  # type: ignore[attr-defined]

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "rig-select" or event.value is Select.BLANK:
            return
        if event.value == DETECTED:
            self.app.action_redetect()  # type: ignore[attr-defined]
            return

        try:
            rig = load_preset(str(event.value))  # a small TOML file: fast enough for the event loop
        except MoetuiError as exc:
            self.notify(str(exc), title="Reference rig", severity="error")
            return
        self.post_message(RigChanged(rig))
