"""A stable id for a rig: the key for saved tuning profiles and the bandwidth cache.

It covers what changes the right settings -- which GPUs (model, VRAM size, host link, MIG layout),
the CPU (model, cores, ISA), RAM size, and the llama.cpp build (version, backends, devices) -- and
leaves out what drifts from moment to moment (free memory, clocks, temperatures, the measured
bandwidth itself). GPU UUIDs are left out too: a like-for-like card swap keeps its tuned profiles.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from moetui.hardware.rig import Rig


def _gib(n: int | None) -> int:
    # RAM "total" moves by a few MiB across kernels and firmware reservations; GiB is stable.
    return round((n or 0) / 2**30)


def hardware_identity(rig: Rig) -> dict[str, Any]:
    return {
        "gpus": [
            {
                "name": g.name,
                "vendor": g.vendor,
                "vram_mib": (g.card_vram_total_bytes or g.vram_total_bytes) // 2**20,
                "pcie": [g.pcie_gen_max, g.pcie_width_max],
                "cc": g.compute_capability,
                "mig": [m.vram_total_bytes // 2**20 for m in g.mig_devices if m.vram_total_bytes] if g.mig_enabled else None,
            }
            for g in rig.gpus
        ],
        "cpu": {
            "model": rig.cpu.model,
            "arch": rig.cpu.arch,
            "cores": [rig.cpu.physical_cores, rig.cpu.logical_cores],
            "flags": sorted(rig.cpu.flags),
            "numa": rig.cpu.numa_nodes,
        },
        "ram_gib": _gib(rig.memory.total_bytes),
    }


def build_identity(rig: Rig) -> dict[str, Any]:
    b = rig.build
    return {
        "installed": b.installed,
        "version": b.version,
        "backends": sorted(b.backends),
        "devices": sorted(f"{d.type}:{d.name}" for d in b.devices),
        "offload": b.gpu_offload,
    }


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def hardware_key(rig: Rig) -> str:
    """Hardware only: the bandwidth cache survives a llama-cpp-python reinstall."""
    return "hw-" + _digest(hardware_identity(rig))


def fingerprint(rig: Rig) -> str:
    """Hardware + build. Preset rigs get a 'preset-' prefix so they never collide with a real one."""
    prefix = "preset-" if rig.source == "preset" else "rig-"
    return prefix + _digest({"hw": hardware_identity(rig), "build": build_identity(rig)})
