"""Rig detection: GPUs (NVML, AMD sysfs, Apple), CPU, RAM, measured RAM bandwidth, the llama.cpp
build, a stable fingerprint, and reference rigs. Domain code: no Textual imports here, and nothing
heavy at import time (numpy and llama_cpp are imported only when a probe runs).

Public API:
    load_rig(name_or_auto="auto", **detect_kwargs) -> Rig
    detect_rig(*, measure_bandwidth=True, use_cache=True, nvml=None, ...) -> Rig
    list_presets() -> list[str];  load_preset(name) -> Rig
    Rig.to_dict() / Rig.from_dict(d)
    Sampler(nvml=None).sample() -> Sample   (live GPU/RAM sampler for the TUI, 2 Hz)
"""

from __future__ import annotations

from moetui.hardware.detect import detect_rig
from moetui.hardware.presets import list_presets, load_preset, load_rig
from moetui.hardware.rig import (
    BandwidthResult,
    CPUInfo,
    GPUInfo,
    LlamaBuildInfo,
    LlamaDevice,
    MemoryInfo,
    MigDevice,
    Rig,
)
from moetui.hardware.sampler import GPUSample, Sample, Sampler

__all__ = [
    "BandwidthResult",
    "CPUInfo",
    "GPUInfo",
    "GPUSample",
    "LlamaBuildInfo",
    "LlamaDevice",
    "MemoryInfo",
    "MigDevice",
    "Rig",
    "Sample",
    "Sampler",
    "detect_rig",
    "list_presets",
    "load_preset",
    "load_rig",
]
