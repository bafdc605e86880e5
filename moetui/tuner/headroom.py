"""A probe judged against the VRAM headroom before it loads. A config that differs from a measured one only
in where the experts sit uses that one's measured VRAM plus the bytes of the experts it moves to the GPU
(exact, from the header); if that is over the limit, loading it would only confirm the failure. On a GPU a
load is most of a probe (an H200 tune at 12 GiB spent one of its three probes on one more layer's experts on
the GPU, which then measured 11.15 GiB against 11.00 allowed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from moetui.config import RunConfig
from moetui.tuner.probe import Probe, ProbeStatus

# a probe predicted over the VRAM limit by no more than this is still loaded and measured. On the H200 cells
# (tuning/results/speed_vs_fit) the prediction from the plan's measured VRAM matched what NVML then measured
# within 2 MiB: 11.156 vs 11.154, 10.955 vs 10.955, 7.304 vs 7.305, 7.091 vs 7.092 GiB; the slack covers
# NVML's own variation between loads, not the prediction
HEADROOM_SLACK = 32 << 20


def _memory_settings(cfg: RunConfig) -> RunConfig:
    """The config without what does not change VRAM beyond the experts' bytes (placement, threads)."""
    return cfg.replace(overrides=[], n_threads=None, n_threads_batch=None)


def predicted_vram(probes: Sequence[Probe], cfg: RunConfig,
                   experts_in_ram_bytes: Callable[[RunConfig], int | None]) -> int | None:
    """The VRAM `cfg` would use, from the latest probe measured with the same memory settings; None without
    one (a new ubatch, context or cache type changes the buffers too) or where a placement is unreadable."""
    same = _memory_settings(cfg)
    for ref in reversed(probes):
        if not ref.vram_bytes or (ref.status == ProbeStatus.SKIPPED and ref.error_kind == "headroom"):
            continue  # (a prediction is no measurement)
        if _memory_settings(ref.config) != same:
            continue
        a, b = experts_in_ram_bytes(ref.config), experts_in_ram_bytes(cfg)
        return None if a is None or b is None else ref.vram_bytes + a - b
    return None
