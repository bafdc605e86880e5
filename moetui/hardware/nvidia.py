"""NVIDIA GPUs through NVML.

All reading goes through an `api` object that has pynvml's function names (`nvmlInit`,
`nvmlDeviceGetMemoryInfo`, ...). In production that object is the `pynvml` module itself; in tests
it is `FakeNvml` (moetui.hardware.fake_nvml) fed from a recorded capture, so every code path -- no
driver, no library, a field NOT_SUPPORTED, MIG, several GPUs -- runs without a GPU.

Each field is read on its own: a field the card or driver does not support becomes None plus a
warning, never an exception out of detection.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moetui.hardware.rig import GPUInfo, MigDevice

NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15

# PCIe payload bandwidth per lane per direction, GB/s, after line encoding (8b/10b for gen 1-2,
# 128b/130b for gen 3-5, FLIT for gen 6). An x16 gen4 link: 16 * 1.969 = 31.5 GB/s.
PCIE_LANE_GBS: dict[int, float] = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def pcie_bandwidth_gbs(gen: int | None, width: int | None) -> float | None:
    if not gen or not width or gen not in PCIE_LANE_GBS:
        return None
    return round(PCIE_LANE_GBS[gen] * width, 2)


def memory_bandwidth_gbs(bus_width_bits: int | None, max_mem_clock_mhz: int | None) -> float | None:
    """Theoretical peak from NVML's figures: clock x 2 (NVML reports the memory clock at half the
    data rate for GDDR6/6X/7 and HBM alike) x bus width in bytes. Checks: H100 SXM 2619 MHz x 5120
    bit = 3352 GB/s; RTX 4090 10501 MHz x 384 bit = 1008 GB/s; RTX 3060 7501 MHz x 192 bit = 360 GB/s."""
    if not bus_width_bits or not max_mem_clock_mhz:
        return None
    return round(max_mem_clock_mhz * 1e6 * 2 * bus_width_bits / 8 / 1e9, 1)


def load_pynvml() -> Any | None:
    """The real NVML binding, or None when nvidia-ml-py is not installed."""
    try:
        return importlib.import_module("pynvml")
    except Exception:  # ImportError, or a broken install raising anything at import
        return None


def _err_code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def describe_nvml_error(exc: BaseException) -> str:
    code = _err_code(exc)
    text = str(exc) or type(exc).__name__
    if code == NVML_ERROR_NOT_SUPPORTED:
        return "not supported by this GPU/driver"
    if code == NVML_ERROR_NO_PERMISSION:
        return "permission denied"
    if code == NVML_ERROR_FUNCTION_NOT_FOUND:
        return "driver too old for this query"
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:  # pynvml: "NVML Shared Library Not Found"
        return "no NVIDIA driver installed"
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return "the NVIDIA driver is not loaded"
    if code == NVML_ERROR_GPU_IS_LOST:
        return "the GPU stopped answering (lost from the bus; a reboot may be needed)"
    if code == NVML_ERROR_UNINITIALIZED:
        return "the NVIDIA driver could not be opened"
    return text


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)


@dataclass
class NvmlReport:
    gpus: list[GPUInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    available: bool = False  # NVML initialised (driver and library present)
    driver_version: str | None = None
    cuda_version: str | None = None


class _FieldReader:
    """Calls one NVML getter; on failure records a warning and returns None."""

    def __init__(self, warnings: list[str], where: str) -> None:
        self.warnings = warnings
        self.where = where

    def __call__(self, label: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # NVMLError subclasses, AttributeError for old bindings, ctypes errors
            if isinstance(exc, AttributeError):
                self.warnings.append(f"{self.where}: {label}: this nvidia-ml-py has no such call")
            else:
                self.warnings.append(f"{self.where}: {label}: {describe_nvml_error(exc)}")
            return None


def cuda_version_str(v: int | None) -> str | None:
    if not v:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def read_nvidia(api: Any | None = None, *, load: Callable[[], Any | None] = load_pynvml) -> NvmlReport:
    """Read every NVIDIA GPU. `api` defaults to the pynvml module; pass a FakeNvml in tests.
    Never raises: a missing library or driver leaves the report empty with one warning."""
    report = NvmlReport()
    if api is None:
        api = load()
        if api is None:
            # Not a warning worth shouting about on a machine with no NVIDIA GPU; the llama.cpp
            # check still flags a CUDA device if one shows up there.
            report.warnings.append("NVIDIA: nvidia-ml-py (pynvml) is not installed; NVIDIA GPUs not read")
            return report
    try:
        api.nvmlInit()
    except Exception as exc:
        code = _err_code(exc)
        if code == NVML_ERROR_LIBRARY_NOT_FOUND:
            msg = "NVIDIA: no NVIDIA driver installed (its library, libnvidia-ml, is not on this machine)"
        elif code == NVML_ERROR_DRIVER_NOT_LOADED:
            msg = "NVIDIA: the NVIDIA driver is installed but not loaded (a reboot, or `sudo modprobe nvidia`)"
        elif code == NVML_ERROR_NO_PERMISSION:
            msg = "NVIDIA: permission denied opening the NVIDIA driver"
        else:
            msg = f"NVIDIA: the driver could not be opened: {describe_nvml_error(exc)}"
        report.warnings.append(msg)
        return report
    report.available = True
    try:
        sysread = _FieldReader(report.warnings, "NVIDIA")
        drv = sysread("driver version", api.nvmlSystemGetDriverVersion)
        report.driver_version = _s(drv) if drv is not None else None
        report.cuda_version = cuda_version_str(sysread("CUDA driver version", api.nvmlSystemGetCudaDriverVersion))
        count = sysread("device count", api.nvmlDeviceGetCount) or 0
        for i in range(count):
            gpu = _read_device(api, i, report)
            if gpu is not None:
                report.gpus.append(gpu)
    finally:
        try:
            api.nvmlShutdown()
        except Exception:
            pass
    return report


def _read_device(api: Any, index: int, report: NvmlReport) -> GPUInfo | None:
    where = f"GPU {index}"
    read = _FieldReader(report.warnings, where)
    handle = read("handle", api.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return None
    name = read("name", api.nvmlDeviceGetName, handle)
    gpu = GPUInfo(name=_s(name) if name is not None else f"NVIDIA GPU {index}", vendor="nvidia", index=index)
    where = f"GPU {index} ({gpu.name})"
    read.where = where
    uuid = read("UUID", api.nvmlDeviceGetUUID, handle)
    gpu.uuid = _s(uuid) if uuid is not None else None
    mem = read("memory info", api.nvmlDeviceGetMemoryInfo, handle)
    if mem is not None:
        gpu.vram_total_bytes = int(mem.total)
        gpu.vram_free_bytes = int(mem.free)
        gpu.vram_used_bytes = int(mem.used)
        gpu.card_vram_total_bytes = int(mem.total)
    gpu.memory_bus_width_bits = read("memory bus width", api.nvmlDeviceGetMemoryBusWidth, handle)
    gpu.max_mem_clock_mhz = read("max memory clock", api.nvmlDeviceGetMaxClockInfo, handle, NVML_CLOCK_MEM)
    gpu.mem_bandwidth_gbs = memory_bandwidth_gbs(gpu.memory_bus_width_bits, gpu.max_mem_clock_mhz)
    if gpu.mem_bandwidth_gbs is None:
        report.warnings.append(f"{where}: memory bandwidth unknown (needs bus width and max memory clock)")
    gpu.pcie_gen_current = read("PCIe generation (current)", api.nvmlDeviceGetCurrPcieLinkGeneration, handle)
    gpu.pcie_gen_max = read("PCIe generation (max)", api.nvmlDeviceGetMaxPcieLinkGeneration, handle)
    gpu.pcie_width_current = read("PCIe width (current)", api.nvmlDeviceGetCurrPcieLinkWidth, handle)
    gpu.pcie_width_max = read("PCIe width (max)", api.nvmlDeviceGetMaxPcieLinkWidth, handle)
    # The max of the link (min of card and slot) is what a transfer gets once the link trains up;
    # idle GPUs drop to gen 1 to save power, so the current figure undersells it. Fall back to
    # current where max is unreadable.
    gpu.pcie_bandwidth_gbs = pcie_bandwidth_gbs(
        gpu.pcie_gen_max or gpu.pcie_gen_current, gpu.pcie_width_max or gpu.pcie_width_current
    )
    if gpu.pcie_bandwidth_gbs is None:
        report.warnings.append(f"{where}: host-link (PCIe) bandwidth unknown")
    cc = read("compute capability", api.nvmlDeviceGetCudaComputeCapability, handle)
    if cc is not None:
        gpu.compute_capability = f"{cc[0]}.{cc[1]}"
    pci = read("PCI info", api.nvmlDeviceGetPciInfo, handle)
    if pci is not None:
        bus = getattr(pci, "busId", None)
        gpu.pci_bus_id = _s(bus) if bus is not None else None
    plim = read("power limit", api.nvmlDeviceGetEnforcedPowerLimit, handle)
    gpu.power_limit_w = plim / 1000.0 if plim is not None else None
    gpu.driver_version = report.driver_version
    gpu.cuda_version = report.cuda_version
    _read_mig(api, handle, gpu, report, where)
    return gpu


def _read_mig(api: Any, handle: Any, gpu: GPUInfo, report: NvmlReport, where: str) -> None:
    # Most GPUs do not support MIG at all: NOT_SUPPORTED here is normal, so it is not a warning.
    try:
        current, _pending = api.nvmlDeviceGetMigMode(handle)
    except Exception as exc:
        if _err_code(exc) not in (NVML_ERROR_NOT_SUPPORTED, None) and not isinstance(exc, AttributeError):
            report.warnings.append(f"{where}: MIG mode: {describe_nvml_error(exc)}")
        return
    if current != 1:
        return
    gpu.mig_enabled = True
    read = _FieldReader(report.warnings, where)
    n = read("MIG device count", api.nvmlDeviceGetMaxMigDeviceCount, handle) or 0
    for k in range(n):
        try:
            mh = api.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
        except Exception as exc:
            # NOT_FOUND: slot k has no instance configured; slots need not be contiguous.
            if _err_code(exc) != NVML_ERROR_NOT_FOUND:
                report.warnings.append(f"{where}: MIG device {k}: {describe_nvml_error(exc)}")
            continue
        uuid = read(f"MIG {k} UUID", api.nvmlDeviceGetUUID, mh)
        mem = read(f"MIG {k} memory", api.nvmlDeviceGetMemoryInfo, mh)
        gpu.mig_devices.append(
            MigDevice(
                index=k,
                uuid=_s(uuid) if uuid is not None else None,
                vram_total_bytes=int(mem.total) if mem is not None else None,
                vram_free_bytes=int(mem.free) if mem is not None else None,
            )
        )
    if gpu.mig_devices and gpu.mig_devices[0].vram_total_bytes:
        # A CUDA process gets one MIG instance (the first unless CUDA_VISIBLE_DEVICES picks another),
        # so that slice is what a model can use. Bandwidth scales with the memory slices it owns.
        first = gpu.mig_devices[0]
        card = gpu.card_vram_total_bytes or first.vram_total_bytes
        gpu.vram_total_bytes = int(first.vram_total_bytes or 0)
        gpu.vram_free_bytes = int(first.vram_free_bytes or 0)
        gpu.vram_used_bytes = gpu.vram_total_bytes - gpu.vram_free_bytes
        if gpu.mem_bandwidth_gbs and card:
            gpu.mem_bandwidth_gbs = round(gpu.mem_bandwidth_gbs * gpu.vram_total_bytes / card, 1)
        report.warnings.append(
            f"{where}: MIG is on with {len(gpu.mig_devices)} instance(s); llama.cpp gets one instance "
            f"({gpu.vram_total_bytes / 2**30:.1f} GiB, bandwidth pro-rated); pick one with CUDA_VISIBLE_DEVICES=MIG-<uuid>"
        )
    else:
        report.warnings.append(f"{where}: MIG is on but no MIG instances are configured; CUDA cannot use this GPU")
        gpu.vram_total_bytes = 0
        gpu.vram_free_bytes = 0


# ---- capture: record what a real NVML says, in the format FakeNvml replays ----------------------


def capture_nvml(api: Any | None = None) -> dict[str, Any]:
    """Record raw NVML values in the fixture format of moetui.hardware.fake_nvml. Unreadable values
    are recorded as {"error": <NVML code>} so the replay raises the same error."""
    api = api if api is not None else load_pynvml()
    if api is None:
        return {"init_error": NVML_ERROR_LIBRARY_NOT_FOUND}
    try:
        api.nvmlInit()
    except Exception as exc:
        return {"init_error": _err_code(exc) or NVML_ERROR_LIBRARY_NOT_FOUND}

    def rec(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            return {"error": _err_code(exc) or NVML_ERROR_NOT_SUPPORTED}

    def mem(v: Any) -> Any:
        return v if _is_err(v) else {"total": int(v.total), "free": int(v.free), "used": int(v.used)}

    def dev(h: Any, mig: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"uuid": _sv(rec(api.nvmlDeviceGetUUID, h)), "memory": mem(rec(api.nvmlDeviceGetMemoryInfo, h))}
        if mig:
            return d
        d["name"] = _sv(rec(api.nvmlDeviceGetName, h))
        d["memory_bus_width"] = rec(api.nvmlDeviceGetMemoryBusWidth, h)
        d["max_mem_clock_mhz"] = rec(api.nvmlDeviceGetMaxClockInfo, h, NVML_CLOCK_MEM)
        d["pcie_gen_current"] = rec(api.nvmlDeviceGetCurrPcieLinkGeneration, h)
        d["pcie_gen_max"] = rec(api.nvmlDeviceGetMaxPcieLinkGeneration, h)
        d["pcie_width_current"] = rec(api.nvmlDeviceGetCurrPcieLinkWidth, h)
        d["pcie_width_max"] = rec(api.nvmlDeviceGetMaxPcieLinkWidth, h)
        cc = rec(api.nvmlDeviceGetCudaComputeCapability, h)
        d["compute_capability"] = list(cc) if isinstance(cc, tuple) else cc
        pci = rec(api.nvmlDeviceGetPciInfo, h)
        d["pci_bus_id"] = pci if _is_err(pci) else _sv(getattr(pci, "busId", ""))
        d["power_limit_mw"] = rec(api.nvmlDeviceGetEnforcedPowerLimit, h)
        d["power_mw"] = rec(api.nvmlDeviceGetPowerUsage, h)
        d["temperature_c"] = rec(api.nvmlDeviceGetTemperature, h, NVML_TEMPERATURE_GPU)
        u = rec(api.nvmlDeviceGetUtilizationRates, h)
        d["utilization"] = u if _is_err(u) else {"gpu": int(u.gpu), "memory": int(u.memory)}
        procs = rec(api.nvmlDeviceGetComputeRunningProcesses, h)
        d["processes"] = procs if _is_err(procs) else [
            {"pid": int(p.pid), "used_memory": getattr(p, "usedGpuMemory", None)} for p in procs
        ]
        mm = rec(api.nvmlDeviceGetMigMode, h)
        d["mig_mode"] = list(mm) if isinstance(mm, (tuple, list)) else mm
        if isinstance(mm, (tuple, list)) and mm[0] == 1:
            migs: list[Any] = []
            for k in range(rec(api.nvmlDeviceGetMaxMigDeviceCount, h) or 0):
                mh = rec(api.nvmlDeviceGetMigDeviceHandleByIndex, h, k)
                migs.append(mh if _is_err(mh) else dev(mh, mig=True))
            d["mig_devices"] = migs
        return d

    try:
        out: dict[str, Any] = {
            "driver_version": _sv(rec(api.nvmlSystemGetDriverVersion)),
            "cuda_driver_version": rec(api.nvmlSystemGetCudaDriverVersion),
            "devices": [],
        }
        n = rec(api.nvmlDeviceGetCount)
        for i in range(n if isinstance(n, int) else 0):
            h = rec(api.nvmlDeviceGetHandleByIndex, i)
            out["devices"].append(h if _is_err(h) else dev(h))
        return out
    finally:
        try:
            api.nvmlShutdown()
        except Exception:
            pass


def _is_err(v: Any) -> bool:
    """A recorded failure ({"error": code}), as opposed to a value or a handle."""
    return isinstance(v, dict) and set(v) == {"error"}


def _sv(v: Any) -> Any:
    return v if _is_err(v) else _s(v)
