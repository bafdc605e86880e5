"""A stand-in for the `pynvml` module that replays a recorded capture.

Capture format (what `moetui detect --capture-nvml FILE` writes, see nvidia.capture_nvml):

    {"driver_version": "550.54.15", "cuda_driver_version": 12040,
     "devices": [{"name": ..., "uuid": ..., "memory": {"total", "free", "used"},
                  "memory_bus_width": 5120, "max_mem_clock_mhz": 2619,
                  "pcie_gen_current": 5, "pcie_gen_max": 5, "pcie_width_current": 16, "pcie_width_max": 16,
                  "compute_capability": [9, 0], "pci_bus_id": "...", "power_limit_mw": 700000,
                  "power_mw": 71000, "temperature_c": 31, "utilization": {"gpu": 0, "memory": 0},
                  "processes": [{"pid": 1, "used_memory": 123}], "mig_mode": [0, 0],
                  "mig_devices": [{"uuid": ..., "memory": {...}} | {"error": 6}, ...]}]}

Any value may be {"error": CODE} (an NVML_ERROR_* number): the matching call raises that NVML error,
which is how NOT_SUPPORTED fields and permission errors are recorded. A top-level
{"init_error": CODE} makes nvmlInit fail (12 = library not found, 9 = driver not loaded).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from moetui.hardware import nvidia as _nv

try:  # raise the real binding's error classes when it is installed, so isinstance checks agree
    from pynvml import NVMLError as _RealNVMLError
except Exception:  # pragma: no cover - nvidia-ml-py is a dependency
    _RealNVMLError = None


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def make_error(code: int) -> Exception:
    if _RealNVMLError is not None:
        return _RealNVMLError(code)
    return FakeNVMLError(code)


class FakeNvml:
    """Implements the pynvml calls moetui uses, from a capture dict. Counts calls so tests can check
    that the sampler stays cheap."""

    NVMLError = _RealNVMLError or FakeNVMLError

    def __init__(self, capture: dict[str, Any]) -> None:
        self.capture = capture
        self.initialised = 0
        self.calls: dict[str, int] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> FakeNvml:
        return cls(json.loads(Path(path).read_text()))

    # -- helpers --------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _ret(self, v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"error"}:
            raise make_error(int(v["error"]))
        return v

    def _need_init(self) -> None:
        if self.initialised <= 0:
            raise make_error(_nv.NVML_ERROR_UNINITIALIZED)

    def _dev(self, handle: Any) -> dict[str, Any]:
        self._need_init()
        return handle  # handles are the device dicts themselves

    def _field(self, handle: Any, key: str, name: str) -> Any:
        self._count(name)
        d = self._dev(handle)
        if key not in d:
            # A capture from an older driver may lack a field: behave like the driver would.
            raise make_error(_nv.NVML_ERROR_NOT_SUPPORTED)
        return self._ret(d[key])

    # -- system ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if "init_error" in self.capture:
            raise make_error(int(self.capture["init_error"]))
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        self._need_init()
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._need_init()
        return self._ret(self.capture.get("driver_version", {"error": _nv.NVML_ERROR_NOT_SUPPORTED}))

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._need_init()
        return self._ret(self.capture.get("cuda_driver_version", {"error": _nv.NVML_ERROR_NOT_SUPPORTED}))

    def nvmlDeviceGetCount(self) -> int:
        self._need_init()
        return len(self.capture.get("devices", []))

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:
        self._need_init()
        devs = self.capture.get("devices", [])
        if not 0 <= i < len(devs):
            raise make_error(_nv.NVML_ERROR_INVALID_ARGUMENT)
        return self._ret(devs[i])

    # -- device ---------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: Any) -> str:
        return self._field(h, "name", "nvmlDeviceGetName")

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return self._field(h, "uuid", "nvmlDeviceGetUUID")

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        m = self._field(h, "memory", "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=m["total"], free=m["free"], used=m["used"])

    def nvmlDeviceGetMemoryBusWidth(self, h: Any) -> int:
        return self._field(h, "memory_bus_width", "nvmlDeviceGetMemoryBusWidth")

    def nvmlDeviceGetMaxClockInfo(self, h: Any, clock_type: int) -> int:
        if clock_type != _nv.NVML_CLOCK_MEM:
            raise make_error(_nv.NVML_ERROR_NOT_SUPPORTED)
        return self._field(h, "max_mem_clock_mhz", "nvmlDeviceGetMaxClockInfo")

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: Any) -> int:
        return self._field(h, "pcie_gen_current", "nvmlDeviceGetCurrPcieLinkGeneration")

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: Any) -> int:
        return self._field(h, "pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration")

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: Any) -> int:
        return self._field(h, "pcie_width_current", "nvmlDeviceGetCurrPcieLinkWidth")

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: Any) -> int:
        return self._field(h, "pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth")

    def nvmlDeviceGetCudaComputeCapability(self, h: Any) -> tuple[int, int]:
        cc = self._field(h, "compute_capability", "nvmlDeviceGetCudaComputeCapability")
        return (int(cc[0]), int(cc[1]))

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        return SimpleNamespace(busId=self._field(h, "pci_bus_id", "nvmlDeviceGetPciInfo"))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any) -> int:
        return self._field(h, "power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit")

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return self._field(h, "power_mw", "nvmlDeviceGetPowerUsage")

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        return self._field(h, "temperature_c", "nvmlDeviceGetTemperature")

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        u = self._field(h, "utilization", "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=u["gpu"], memory=u["memory"])

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        procs = self._field(h, "processes", "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=p["pid"], usedGpuMemory=p.get("used_memory")) for p in procs]

    def nvmlDeviceGetMigMode(self, h: Any) -> tuple[int, int]:
        mm = self._field(h, "mig_mode", "nvmlDeviceGetMigMode")
        return (int(mm[0]), int(mm[1]))

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:
        self._count("nvmlDeviceGetMaxMigDeviceCount")
        return len(self._dev(h).get("mig_devices", []))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, k: int) -> Any:
        self._count("nvmlDeviceGetMigDeviceHandleByIndex")
        migs = self._dev(h).get("mig_devices", [])
        if not 0 <= k < len(migs):
            raise make_error(_nv.NVML_ERROR_NOT_FOUND)
        return self._ret(migs[k])
