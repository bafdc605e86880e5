"""The real H100 capture: `moetui detect --json` and the raw NVML readings, both taken on the lent H100
(CUDA build of llama.cpp) and committed as fixtures. The NVML code path must turn the raw capture into the
same GPU record the real run produced."""

from __future__ import annotations

import json
from pathlib import Path

from moetui.hardware import detect
from moetui.hardware.fake_nvml import FakeNvml
from moetui.hardware.rig import Rig

FIX = Path(__file__).parent / "fixtures" / "hardware"


def test_replayed_h100_capture_matches_the_real_detect_output() -> None:
    real = json.loads((FIX / "detect_h100.json").read_text())
    rig = detect.detect_rig(nvml=FakeNvml.from_file(FIX / "nvml_capture_h100.json"), measure_bandwidth=False,
                            sysctl_text=None)
    assert len(rig.gpus) == len(real["gpus"]) == 1
    got, want = rig.to_dict()["gpus"][0], real["gpus"][0]
    for key in ("name", "uuid", "vram_total_bytes", "memory_bus_width_bits", "max_mem_clock_mhz",
                "mem_bandwidth_gbs", "pcie_gen_max", "pcie_width_max", "pcie_bandwidth_gbs", "compute_capability"):
        if key in want:
            assert got[key] == want[key], key
    assert rig.gpus[0].mem_bandwidth_gbs > 3000  # HBM3: 5120-bit bus at 2619 MHz


def test_real_h100_detect_output_loads_as_a_rig() -> None:
    real = json.loads((FIX / "detect_h100.json").read_text())
    rig = Rig.from_dict(real)
    assert rig.build.gpu_offload
    assert rig.gpus[0].vram_total_bytes > 79 * 2**30
    assert rig.cpu.logical_cores == 16
    assert rig.ram_bandwidth_gbs and rig.ram_bandwidth_gbs > 50
