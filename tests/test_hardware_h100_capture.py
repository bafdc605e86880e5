"""The real H100 capture: `moetui detect --json` and the raw NVML readings, both taken on the lent H100
(CUDA build of llama.cpp kept outside the package and loaded through LLAMA_CPP_LIB_PATH, as
tuning/gpu/setup.sh does) and committed as fixtures; rerun with `bash tuning/gpu/hardware_capture.sh h100`
on that machine. The NVML code path must turn the raw capture into the same GPU record the real run produced."""

from __future__ import annotations

import json
from pathlib import Path

from moetui.hardware import detect, llama_build
from moetui.hardware.fake_nvml import FakeNvml
from moetui.hardware.rig import LlamaBuildInfo, Rig

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
    assert rig.warnings == [], "on the real GPU box every field was read"


def test_real_h100_build_lists_cuda_and_its_device_memory() -> None:
    """The ggml device list as llama.cpp saw it there: the CUDA backend, the H100 as CUDA0 with its free
    memory, read from the libggml that LLAMA_CPP_LIB_PATH pointed at (not the package's lib/)."""
    rig = Rig.from_dict(json.loads((FIX / "detect_h100.json").read_text()))
    b = rig.build
    assert b.backends == ["CUDA", "CPU"] and b.advice is None
    assert not b.lib_dir.endswith("llama_cpp/lib")
    cuda = [d for d in b.devices if d.type == "gpu"]
    assert [d.name for d in cuda] == ["CUDA0"] and cuda[0].description == rig.gpus[0].name
    # llama.cpp's free figure is what it will place tensors into: close to, not above, NVML's total
    assert 0.95 * rig.gpus[0].vram_total_bytes < cuda[0].memory_free_bytes <= cuda[0].memory_total_bytes <= rig.gpus[0].vram_total_bytes
    assert llama_build.advise(b, rig.gpus) is None
    # the same hardware with this machine's CPU-only build would get the reinstall advice
    cpu_only = LlamaBuildInfo(installed=True, backends=["CPU"], devices=[d for d in b.devices if d.type == "cpu"])
    assert "-DGGML_CUDA=on" in (llama_build.advise(cpu_only, rig.gpus) or "")


def test_fingerprint_of_the_real_capture_is_stable_and_tracks_the_build() -> None:
    """Saved tuning profiles are keyed by this id: recomputing it from the recorded rig must give what the
    H100 printed (a change to what the fingerprint covers orphans every saved profile), and swapping the
    build for a CPU-only one must change it while the hardware key (bandwidth cache) stays."""
    from moetui.hardware.fingerprint import fingerprint, hardware_key

    real = json.loads((FIX / "detect_h100.json").read_text())
    rig = Rig.from_dict(real)
    assert fingerprint(rig) == real["fingerprint"]
    rig.gpus[0].vram_free_bytes //= 2  # a model loaded elsewhere: same rig
    rig.ram_bandwidth_gbs = 1.0
    assert fingerprint(rig) == real["fingerprint"]
    cpu_only = Rig.from_dict(real)
    cpu_only.build.backends, cpu_only.build.gpu_offload = ["CPU"], False
    cpu_only.build.devices = [d for d in cpu_only.build.devices if d.type == "cpu"]
    assert fingerprint(cpu_only) != real["fingerprint"] and hardware_key(cpu_only) == hardware_key(rig)
