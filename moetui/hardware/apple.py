"""Apple Silicon: CPU, unified memory and the GPU's share of it, from `sysctl` (best effort).

The GPU has no VRAM of its own. Metal caps what one process may wire for the GPU at
recommendedMaxWorkingSetSize, which is 3/4 of RAM on machines with more than 36 GB and about
2/3 below (llama.cpp logs this figure at load time); `sudo sysctl iogpu.wired_limit_mb=N` raises
it, and when set we use it. Memory bandwidth is not exposed, so it comes from Apple's published
figures per chip (and CPU core count where one chip name ships in two bandwidth bins).
"""

from __future__ import annotations

import platform
import subprocess

from moetui.hardware.cpu import normalise_flags
from moetui.hardware.rig import CPUInfo, GPUInfo, MemoryInfo

# chip -> published unified memory bandwidth GB/s; a dict means {cpu cores: GB/s} for binned chips.
APPLE_BANDWIDTH: dict[str, float | dict[int, float]] = {
    "M1": 68.25,
    "M1 Pro": 200.0,
    "M1 Max": 400.0,
    "M1 Ultra": 800.0,
    "M2": 100.0,
    "M2 Pro": 200.0,
    "M2 Max": 400.0,
    "M2 Ultra": 800.0,
    "M3": 100.0,
    "M3 Pro": 150.0,
    "M3 Max": {14: 300.0, 16: 400.0},
    "M3 Ultra": 819.0,
    "M4": 120.0,
    "M4 Pro": 273.0,
    "M4 Max": {14: 410.0, 16: 546.0},
}

_ARM_FEATS = {
    "hw.optional.arm.FEAT_DotProd": "asimddp",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.arm.FEAT_FP16": "fphp",
    "hw.optional.arm.FEAT_SME": "sme",
    "hw.optional.AdvSIMD": "asimd",
    "hw.optional.neon": "asimd",
}


def parse_sysctl(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if sep:
            out[key.strip()] = val.strip()
    return out


def read_sysctl_text() -> str | None:
    if platform.system() != "Darwin":
        return None
    try:
        return subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def chip_bandwidth_gbs(brand: str, cpu_cores: int | None) -> float | None:
    chip = brand.replace("Apple", "").strip()
    bw = APPLE_BANDWIDTH.get(chip)
    if isinstance(bw, dict):
        if cpu_cores in bw:
            return bw[cpu_cores]
        return max(bw.values())
    return bw


def gpu_working_set_bytes(memsize: int, wired_limit_mb: int | None) -> int:
    if wired_limit_mb:
        return wired_limit_mb * 2**20
    # Metal's recommendedMaxWorkingSetSize heuristic (see module doc).
    return int(memsize * 0.75) if memsize > 36 * 10**9 else int(memsize * 2 / 3)


def read_apple(sysctl_text: str | None, warnings: list[str] | None = None) -> tuple[CPUInfo, MemoryInfo, list[GPUInfo]] | None:
    """From `sysctl -a` output. None when the text is not from an Apple Silicon Mac."""
    warnings = warnings if warnings is not None else []
    if not sysctl_text:
        return None
    s = parse_sysctl(sysctl_text)
    brand = s.get("machdep.cpu.brand_string", "")
    if not brand.startswith("Apple"):
        return None  # an Intel Mac: handled by the generic path

    def i(key: str) -> int | None:
        try:
            return int(s[key])
        except (KeyError, ValueError):
            return None

    cpu = CPUInfo(model=brand, arch="arm64")
    cpu.physical_cores = i("hw.physicalcpu") or i("hw.ncpu") or 1
    cpu.logical_cores = i("hw.logicalcpu") or cpu.physical_cores
    cpu.performance_cores = i("hw.perflevel0.physicalcpu")
    cpu.efficiency_cores = i("hw.perflevel1.physicalcpu")
    raw = {flag for key, flag in _ARM_FEATS.items() if s.get(key) == "1"}
    cpu.flags = normalise_flags(raw, "arm64")
    l3 = i("hw.perflevel0.l2cachesize")  # Apple has no L3 to the cores; the shared L2 plays its part
    cpu.l3_cache_bytes = l3

    memsize = i("hw.memsize") or 0
    if not memsize:
        warnings.append("Apple: hw.memsize unreadable; memory size unknown")
    mem = MemoryInfo(total_bytes=memsize)
    gpu_bytes = gpu_working_set_bytes(memsize, i("iogpu.wired_limit_mb"))
    gpu = GPUInfo(name=f"{brand} GPU", vendor="apple", unified_memory=True)
    gpu.vram_total_bytes = gpu_bytes
    gpu.vram_free_bytes = gpu_bytes  # refined by llama.cpp's Metal device memory when available
    gpu.card_vram_total_bytes = memsize
    gpu.mem_bandwidth_gbs = chip_bandwidth_gbs(brand, cpu.physical_cores)
    if gpu.mem_bandwidth_gbs is None:
        warnings.append(f"Apple: no published memory bandwidth known for {brand}")
    return cpu, mem, [gpu]
