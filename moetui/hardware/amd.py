"""AMD GPUs from the amdgpu driver's sysfs files (best effort: no ROCm library needed).

/sys/class/drm/cardN/device/ holds mem_info_vram_total and mem_info_vram_used (bytes), the PCI
vendor/device ids and the PCIe link (current_link_speed "16.0 GT/s PCIe", current_link_width "16",
max_link_*). sysfs has no bus width, so theoretical memory bandwidth comes from a small table of
published figures keyed by PCI device id; unknown cards get None and a warning.
"""

from __future__ import annotations

import re
from pathlib import Path

from moetui.hardware.nvidia import pcie_bandwidth_gbs
from moetui.hardware.rig import GPUInfo

AMD_VENDOR = "0x1002"

# PCI device id -> (marketing name, published memory bandwidth GB/s).
AMD_KNOWN: dict[str, tuple[str, float]] = {
    "0x744c": ("Radeon RX 7900 XTX / XT", 960.0),  # XTX 960, XT 800: same die id; XTX the common one
    "0x7448": ("Radeon PRO W7900", 864.0),
    "0x73bf": ("Radeon RX 6800 / 6800 XT / 6900 XT", 512.0),
    "0x73af": ("Radeon RX 6900 XT", 512.0),
    "0x73df": ("Radeon RX 6700 XT", 384.0),
    "0x7480": ("Radeon RX 7600", 288.0),
    "0x7550": ("Radeon RX 9070 XT", 640.0),
    "0x740c": ("Instinct MI250X / MI250", 3277.0),
    "0x740f": ("Instinct MI210", 1638.0),
    "0x74a1": ("Instinct MI300X", 5300.0),
    "0x74a5": ("Instinct MI325X", 6000.0),
}

# PCIe transfer rate (GT/s) -> generation
_GTS_TO_GEN = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _gen(speed: str | None) -> int | None:
    if not speed:
        return None
    m = re.match(r"\s*([\d.]+)\s*GT/s", speed)
    return _GTS_TO_GEN.get(float(m.group(1))) if m else None


def _int(s: str | None) -> int | None:
    try:
        return int(s) if s is not None else None
    except ValueError:
        return None


def read_amd(drm_root: str | Path = "/sys/class/drm", warnings: list[str] | None = None) -> list[GPUInfo]:
    warnings = warnings if warnings is not None else []
    root = Path(drm_root)
    gpus: list[GPUInfo] = []
    try:
        cards = sorted((p for p in root.glob("card[0-9]*") if re.fullmatch(r"card\d+", p.name)), key=lambda p: int(p.name[4:]))
    except OSError:
        return gpus
    for card in cards:
        dev = card / "device"
        if _read(dev / "vendor") != AMD_VENDOR:
            continue
        total = _int(_read(dev / "mem_info_vram_total"))
        if total is None:
            continue  # not an amdgpu-driven card (or an APU without VRAM accounting)
        used = _int(_read(dev / "mem_info_vram_used"))
        pci_id = (_read(dev / "device") or "").lower()
        known = AMD_KNOWN.get(pci_id)
        name = _read(dev / "product_name") or (f"AMD {known[0]}" if known else f"AMD GPU {pci_id or '?'}")
        g = GPUInfo(name=name, vendor="amd", index=len(gpus))
        where = f"AMD GPU {g.index} ({name})"
        g.vram_total_bytes = total
        g.card_vram_total_bytes = total
        if used is None:
            warnings.append(f"{where}: mem_info_vram_used unreadable; free VRAM assumed equal to total")
            g.vram_free_bytes = total
        else:
            g.vram_used_bytes = used
            g.vram_free_bytes = max(0, total - used)
        g.pcie_gen_current = _gen(_read(dev / "current_link_speed"))
        g.pcie_gen_max = _gen(_read(dev / "max_link_speed"))
        g.pcie_width_current = _int(_read(dev / "current_link_width"))
        g.pcie_width_max = _int(_read(dev / "max_link_width"))
        g.pcie_bandwidth_gbs = pcie_bandwidth_gbs(g.pcie_gen_max or g.pcie_gen_current, g.pcie_width_max or g.pcie_width_current)
        if g.pcie_bandwidth_gbs is None:
            warnings.append(f"{where}: PCIe link unreadable")
        if known:
            g.mem_bandwidth_gbs = known[1]
        else:
            warnings.append(f"{where}: memory bandwidth unknown for PCI id {pci_id or '?'} (sysfs has no bus width)")
        uevent = _read(dev / "uevent") or ""
        m = re.search(r"PCI_SLOT_NAME=(\S+)", uevent)
        g.pci_bus_id = m.group(1) if m else None
        gpus.append(g)
    return gpus
