"""CPU and system memory.

Linux reads /proc and /sys (the root is a parameter so tests replay recorded trees); macOS uses
sysctl (see apple.py); elsewhere psutil and platform give what they can. Every read is guarded:
a field that cannot be read keeps its default and adds a warning.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

import psutil

from moetui.hardware.rig import CPUInfo, MemoryInfo

# /proc/cpuinfo flag (x86 "flags", ARM "Features") -> the name llama.cpp's system info uses.
_X86_FLAGS: dict[str, str] = {
    "sse3": "SSE3",
    "pni": "SSE3",
    "ssse3": "SSSE3",
    "avx": "AVX",
    "avx2": "AVX2",
    "fma": "FMA",
    "f16c": "F16C",
    "avx_vnni": "AVX_VNNI",
    "avx512f": "AVX512",
    "avx512bw": "AVX512_BW",
    "avx512vl": "AVX512_VL",
    "avx512_vbmi": "AVX512_VBMI",
    "avx512_vnni": "AVX512_VNNI",
    "avx512_bf16": "AVX512_BF16",
    "amx_tile": "AMX_TILE",
    "amx_int8": "AMX_INT8",
    "amx_bf16": "AMX_BF16",
}
_ARM_FLAGS: dict[str, str] = {
    "asimd": "NEON",
    "neon": "NEON",
    "asimddp": "DOTPROD",
    "i8mm": "MATMUL_INT8",
    "sve": "SVE",
    "sve2": "SVE2",
    "bf16": "BF16",
    "fphp": "FP16_VA",
    "asimdhp": "FP16_VA",
    "sme": "SME",
}


def normalise_flags(raw: set[str], arch: str) -> list[str]:
    table = _ARM_FLAGS if arch.lower() in ("aarch64", "arm64") or "asimd" in raw else _X86_FLAGS
    out = {table[f] for f in raw if f in table}
    if arch.lower() in ("aarch64", "arm64"):
        out.add("NEON")  # NEON (ASIMD) is mandatory on AArch64 even where cpuinfo omits it
    return sorted(out)


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0,1,2,3,8,10,11] (the kernel's cpulist format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            cpus.extend(range(int(a), int(b) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name, the flag set and the physical core count (unique (physical id, core id) pairs)."""
    model = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    phys = core = None
    for line in text.splitlines():
        if ":" not in line:
            if not line.strip() and phys is not None and core is not None:
                cores.add((phys, core))
                phys = core = None
            continue
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key in ("model name", "hardware", "cpu model") and model is None and val:
            model = val
        elif key in ("flags", "features") and not flags:
            flags = set(val.split())
        elif key == "physical id":
            phys = val
        elif key == "core id":
            core = val
    if phys is not None and core is not None:
        cores.add((phys, core))
    return {"model": model, "flags": flags, "physical_cores": len(cores) or None}


def read_cpu(root: str | Path = "/", warnings: list[str] | None = None) -> CPUInfo:
    """Read the CPU. `root` lets tests point at a recorded /proc + /sys tree."""
    warnings = warnings if warnings is not None else []
    root = Path(root)
    live = root == Path("/")
    info = CPUInfo(arch=platform.machine() or "unknown")
    cpuinfo = _read(root / "proc/cpuinfo")
    parsed: dict[str, Any] = parse_cpuinfo(cpuinfo) if cpuinfo else {"model": None, "flags": set(), "physical_cores": None}
    if cpuinfo is None and platform.system() == "Linux":
        warnings.append("CPU: /proc/cpuinfo unreadable; model and ISA flags unknown")
    if not live and parsed["flags"]:
        # A recorded tree comes from another machine: infer its arch from its flags.
        info.arch = "aarch64" if "asimd" in parsed["flags"] else "x86_64"
    info.model = parsed["model"] or (platform.processor() if live else None) or "unknown"
    info.flags = normalise_flags(parsed["flags"], info.arch)

    # logical cores: the online cpulist is exact even inside containers' cpu sets
    online = _read(root / "sys/devices/system/cpu/online")
    logical = len(parse_cpulist(online)) if online else None
    if logical is None and live:
        logical = os.cpu_count()
    info.logical_cores = logical or 1
    physical = parsed["physical_cores"]
    if live:
        try:
            physical = psutil.cpu_count(logical=False) or physical
        except Exception as exc:  # psutil denied (a sandbox)
            warnings.append(f"CPU: psutil could not count physical cores ({exc}); using /proc/cpuinfo")
    info.physical_cores = physical or info.logical_cores
    if physical is None:
        warnings.append("CPU: physical core count unknown; assuming one per logical CPU")

    # Hybrid Intel (Alder Lake+): the kernel exposes P and E cores as two PMUs with cpulists.
    p_list = _read(root / "sys/devices/cpu_core/cpus")
    e_list = _read(root / "sys/devices/cpu_atom/cpus")
    if p_list and e_list:
        p_cpus, e_cpus = parse_cpulist(p_list), parse_cpulist(e_list)
        # P cores have 2 threads each with HT; E cores one. Count cores, not threads, via siblings.
        info.performance_cores = _count_cores(root, p_cpus)
        info.efficiency_cores = _count_cores(root, e_cpus)

    nodes = [p for p in (root / "sys/devices/system/node").glob("node[0-9]*")] if (root / "sys/devices/system/node").is_dir() else []
    info.numa_nodes = max(1, len(nodes))

    l3 = _read(root / "sys/devices/system/cpu/cpu0/cache/index3/size")
    if l3:
        info.l3_cache_bytes = _parse_size(l3)
    return info


def _count_cores(root: Path, cpus: list[int]) -> int:
    seen: set[str] = set()
    for c in cpus:
        sib = _read(root / f"sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list")
        seen.add(sib.strip() if sib else str(c))
    return len(seen)


def _parse_size(text: str) -> int | None:
    m = re.match(r"\s*(\d+)\s*([KMG]?)", text)
    if not m:
        return None
    mult = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]
    return int(m.group(1)) * mult


def parse_meminfo(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if m:
            out[m.group(1)] = int(m.group(2)) * 1024
    return out


def read_memory(root: str | Path = "/", warnings: list[str] | None = None, *, use_psutil: bool = True) -> MemoryInfo:
    """RAM and swap. psutil first; /proc/meminfo when psutil is missing or denied."""
    warnings = warnings if warnings is not None else []
    root = Path(root)
    mem = MemoryInfo()
    if use_psutil and root == Path("/"):
        try:
            vm = psutil.virtual_memory()
            sw = psutil.swap_memory()
            mem.total_bytes, mem.available_bytes = int(vm.total), int(vm.available)
            mem.swap_total_bytes, mem.swap_free_bytes = int(sw.total), int(sw.free)
            return mem
        except Exception as exc:
            warnings.append(f"memory: psutil failed ({type(exc).__name__}: {exc}); reading /proc/meminfo")
    text = _read(root / "proc/meminfo")
    if not text:
        warnings.append("memory: RAM size unknown (no psutil, no /proc/meminfo)")
        return mem
    m = parse_meminfo(text)
    mem.total_bytes = m.get("MemTotal", 0)
    # MemAvailable exists since Linux 3.14; before that free + page cache is the usual estimate.
    mem.available_bytes = m.get("MemAvailable", m.get("MemFree", 0) + m.get("Cached", 0))
    mem.swap_total_bytes = m.get("SwapTotal", 0)
    mem.swap_free_bytes = m.get("SwapFree", 0)
    return mem
