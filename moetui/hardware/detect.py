"""detect_rig(): put the readers together into one Rig, degrading field by field.

Every reader takes its source as a parameter (an NVML-like api, a /proc+/sys root, sysctl text),
so tests drive this whole function from recorded fixtures.
"""

from __future__ import annotations

import platform
import threading
from pathlib import Path
from typing import Any

import psutil

from moetui.hardware import amd, apple, bandwidth, cpu, llama_build, nvidia, repack
from moetui.hardware.fingerprint import fingerprint, hardware_key
from moetui.hardware.rig import GPUInfo, Rig

_UNSET: Any = object()


def detect_rig(
    *,
    measure_bandwidth: bool = True,
    use_cache: bool = True,
    nvml: Any = None,
    root: str | Path = "/",
    drm_root: str | Path | None = None,
    sysctl_text: str | None = _UNSET,
    llama: bool = True,
    stop: threading.Event | None = None,
) -> Rig:
    """Detect this machine. Never raises for hardware it cannot read: see rig.warnings.

    measure_bandwidth: run the RAM bandwidth probe (<= 1 s), or reuse the cached figure after a ~0.3 s
        check that it was not measured under load (moetui.hardware.bandwidth).
    use_cache: reuse a cached bandwidth figure for the same hardware (30 days).
    nvml: an object with pynvml's functions (tests pass FakeNvml); None = the real pynvml.
    root / drm_root / sysctl_text: recorded sources for tests; defaults read the live machine.
    llama: read the llama-cpp-python build (imports llama_cpp, ~0.4 s).
    stop: set it to cancel the bandwidth probe (the TUI runs detection in a worker thread).
    """
    warnings: list[str] = []
    rig = Rig(name="this machine", source="detected", os=f"{platform.system()} {platform.release()}".strip())

    # -- CPU and memory ----------------------------------------------------------------------
    if sysctl_text is _UNSET:
        sysctl_text = apple.read_sysctl_text() if Path(root) == Path("/") else None
    mac = apple.read_apple(sysctl_text, warnings) if sysctl_text else None
    apple_gpus: list[GPUInfo] = []
    if mac:
        rig.cpu, rig.memory, apple_gpus = mac
        if Path(root) == Path("/"):
            rig.memory = _with_live_memory(rig.memory, warnings)
    else:
        rig.cpu = _guard(lambda: cpu.read_cpu(root, warnings), warnings, "CPU", rig.cpu)
        rig.memory = _guard(lambda: cpu.read_memory(root, warnings), warnings, "memory", rig.memory)

    # -- GPUs --------------------------------------------------------------------------------
    nv = nvidia.read_nvidia(nvml)
    gpus = list(nv.gpus)
    # On a machine with no NVIDIA hardware, "no NVML" is expected: say it once, quietly.
    warnings.extend(nv.warnings)
    if drm_root is None:
        drm_root = Path(root) / "sys/class/drm"
    gpus += _guard(lambda: amd.read_amd(drm_root, warnings), warnings, "AMD GPUs", [])
    gpus += apple_gpus
    for i, g in enumerate(gpus):
        g.index = i
    rig.gpus = gpus

    # -- llama.cpp build ---------------------------------------------------------------------
    if llama:
        rig.build = llama_build.read_llama_build(warnings)
        if rig.build.installed:
            check = repack.repack_safe(rig.build.system_info or "", rig.build.lib_dir)
            rig.build.repack_safe, rig.build.repack_note = check.safe, check.reason
            if not check.safe:
                warnings.append(check.reason)
        _reconcile(rig, warnings)
        rig.build.advice = llama_build.advise(rig.build, rig.gpus)
        if rig.build.advice and rig.build.installed:
            warnings.append(rig.build.advice.splitlines()[0])

    rig.name = describe(rig)
    rig.fingerprint = fingerprint(rig)

    # -- RAM bandwidth -----------------------------------------------------------------------
    if measure_bandwidth:
        res = bandwidth.ram_bandwidth(
            hardware_key(rig),
            use_cache=use_cache,
            physical_cores=rig.cpu.physical_cores,
            l3_bytes=rig.cpu.l3_cache_bytes,
            available_bytes=rig.memory.available_bytes or None,
            warnings=warnings,
            stop=stop,
        )
        rig.bandwidth_probe = res
        rig.ram_bandwidth_gbs = res.best_gbs if res else None
    rig.warnings = warnings
    return rig


def _guard(fn: Any, warnings: list[str], what: str, default: Any) -> Any:
    """Last line of defence: a reader bug or an odd platform costs that part, not the whole rig."""
    try:
        return fn()
    except Exception as exc:
        warnings.append(f"{what}: detection failed ({type(exc).__name__}: {exc})")
        return default


def _with_live_memory(mem: Any, warnings: list[str]) -> Any:
    try:
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        mem.available_bytes = int(vm.available)
        mem.swap_total_bytes, mem.swap_free_bytes = int(sw.total), int(sw.free)
    except Exception as exc:
        warnings.append(f"memory: available RAM unknown ({exc})")
    return mem


def _reconcile(rig: Rig, warnings: list[str]) -> None:
    """Cross-check the GPUs we read against the devices llama.cpp sees."""
    gpu_devs = [d for d in rig.build.devices if d.type in ("gpu", "igpu")]
    if not rig.gpus and gpu_devs:
        # NVML/sysfs gave nothing but the build can see GPUs: use llama.cpp's own figures.
        for d in gpu_devs:
            rig.gpus.append(
                GPUInfo(
                    name=d.description or d.name,
                    vendor="nvidia" if d.name.upper().startswith("CUDA") else "unknown",
                    index=len(rig.gpus),
                    vram_total_bytes=d.memory_total_bytes or 0,
                    vram_free_bytes=d.memory_free_bytes or 0,
                )
            )
        warnings.append("GPUs taken from llama.cpp's device list; bandwidth figures unknown")
    elif len(rig.gpus) == 1 and rig.gpus[0].unified_memory and len(gpu_devs) == 1:
        # Metal reports the working-set cap and what is free of it: better than our heuristic.
        g, d = rig.gpus[0], gpu_devs[0]
        if d.memory_total_bytes:
            g.vram_total_bytes = d.memory_total_bytes
            g.vram_free_bytes = d.memory_free_bytes or d.memory_total_bytes


def describe(rig: Rig) -> str:
    """Short human name: '2x NVIDIA GeForce RTX 3090 + AMD Ryzen 9 5950X, 128 GiB RAM'."""
    names: dict[str, int] = {}
    for g in rig.gpus:
        names[g.name] = names.get(g.name, 0) + 1
    gpu = ", ".join(f"{n}x {k}" if n > 1 else k for k, n in names.items())
    ram = f"{rig.memory.total_bytes / 2**30:.0f} GiB RAM"
    if not gpu:
        return f"{rig.cpu.model}, {ram}, no GPU"
    return f"{gpu} + {rig.cpu.model}, {ram}"
