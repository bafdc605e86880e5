"""Live sampler for the TUI: per-GPU used VRAM (total and per process), utilization, power and
temperature, plus system RAM and CPU load. Cheap enough to poll at 2 Hz: NVML is initialised once
and device handles are kept; a sample is a handful of NVML calls per GPU and two psutil calls.

Fields a GPU does not support are dropped after the first failure so later samples do not pay for
them (consumer cards, for instance, answer NOT_SUPPORTED for per-process memory under WDDM).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from moetui.hardware import nvidia


@dataclass
class GPUSample:
    index: int
    name: str
    vram_used_bytes: int | None = None
    vram_total_bytes: int | None = None
    util_gpu_pct: int | None = None
    util_mem_pct: int | None = None
    power_w: float | None = None
    temperature_c: int | None = None
    # pid -> bytes; None values where NVML lists a process but not its memory
    processes: dict[int, int | None] = field(default_factory=dict)


@dataclass
class Sample:
    t: float
    gpus: list[GPUSample] = field(default_factory=list)
    ram_used_bytes: int | None = None
    ram_available_bytes: int | None = None
    cpu_pct: float | None = None


class Sampler:
    """Use as a context manager, or call close(). Never raises from sample()."""

    def __init__(self, nvml: Any = None, *, load: Callable[[], Any] = nvidia.load_pynvml, with_processes: bool = True) -> None:
        self.api = nvml if nvml is not None else load()
        self.with_processes = with_processes
        self._handles: list[tuple[int, str, Any]] = []
        self._unsupported: set[tuple[int, str]] = set()
        self._inited = False
        self.error: str | None = None
        if self.api is None:
            self.error = "nvidia-ml-py not installed"
            return
        try:
            self.api.nvmlInit()
            self._inited = True
            for i in range(self.api.nvmlDeviceGetCount()):
                h = self.api.nvmlDeviceGetHandleByIndex(i)
                try:
                    name = nvidia._s(self.api.nvmlDeviceGetName(h))
                except Exception:
                    name = f"GPU {i}"
                self._handles.append((i, name, h))
        except Exception as exc:
            self.error = nvidia.describe_nvml_error(exc)
        try:
            psutil.cpu_percent(None)  # prime: the first call returns 0.0 by definition
        except Exception:
            pass

    def _get(self, i: int, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        if (i, key) in self._unsupported:
            return None
        try:
            return fn(*args)
        except Exception:
            self._unsupported.add((i, key))
            return None

    def sample(self) -> Sample:
        s = Sample(t=time.monotonic())
        api = self.api
        for i, name, h in self._handles:
            g = GPUSample(index=i, name=name)
            mem = self._get(i, "mem", api.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                g.vram_used_bytes, g.vram_total_bytes = int(mem.used), int(mem.total)
            u = self._get(i, "util", api.nvmlDeviceGetUtilizationRates, h)
            if u is not None:
                g.util_gpu_pct, g.util_mem_pct = int(u.gpu), int(u.memory)
            p = self._get(i, "power", api.nvmlDeviceGetPowerUsage, h)
            g.power_w = p / 1000.0 if p is not None else None
            g.temperature_c = self._get(i, "temp", api.nvmlDeviceGetTemperature, h, nvidia.NVML_TEMPERATURE_GPU)
            if self.with_processes:
                procs = self._get(i, "procs", api.nvmlDeviceGetComputeRunningProcesses, h) or []
                g.processes = {int(pr.pid): (int(pr.usedGpuMemory) if pr.usedGpuMemory is not None else None) for pr in procs}
            s.gpus.append(g)
        try:
            vm = psutil.virtual_memory()
            s.ram_used_bytes, s.ram_available_bytes = int(vm.total - vm.available), int(vm.available)
            s.cpu_pct = psutil.cpu_percent(None)
        except Exception:
            pass
        return s

    def close(self) -> None:
        if self._inited:
            try:
                self.api.nvmlShutdown()
            except Exception:
                pass
            self._inited = False
            self._handles = []

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
