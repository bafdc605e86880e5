"""NVML reading against recorded captures (FakeNvml) and against the real pynvml on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moetui.hardware import nvidia
from moetui.hardware.fake_nvml import FakeNvml
from moetui.hardware.nvidia import (
    capture_nvml,
    memory_bandwidth_gbs,
    pcie_bandwidth_gbs,
    read_nvidia,
)

FIX = Path(__file__).parent / "fixtures" / "hardware"
MiB = 2**20


def fake(name: str) -> FakeNvml:
    return FakeNvml.from_file(FIX / f"nvml_{name}.json")


def test_bandwidth_formulas_match_published_specs() -> None:
    assert memory_bandwidth_gbs(5120, 2619) == pytest.approx(3352, abs=1)  # H100 SXM: 3.35 TB/s
    assert memory_bandwidth_gbs(384, 10501) == pytest.approx(1008, abs=1)  # RTX 4090
    assert memory_bandwidth_gbs(192, 7501) == pytest.approx(360, abs=1)  # RTX 3060 12 GB
    assert memory_bandwidth_gbs(512, 14001) == pytest.approx(1792, abs=1)  # RTX 5090
    assert memory_bandwidth_gbs(None, 2619) is None
    assert pcie_bandwidth_gbs(4, 16) == pytest.approx(31.5, abs=0.1)
    assert pcie_bandwidth_gbs(5, 16) == pytest.approx(63.0, abs=0.1)
    assert pcie_bandwidth_gbs(3, 8) == pytest.approx(7.88, abs=0.01)
    assert pcie_bandwidth_gbs(None, 16) is None
    assert pcie_bandwidth_gbs(9, 16) is None


def test_h100_capture() -> None:
    api = fake("h100_sxm")
    rep = read_nvidia(api)
    assert rep.available and rep.warnings == []
    (g,) = rep.gpus
    assert g.name == "NVIDIA H100 80GB HBM3" and g.vendor == "nvidia"
    assert g.vram_total_bytes == 81559 * MiB
    assert g.vram_free_bytes == (81559 - 521) * MiB
    assert g.mem_bandwidth_gbs == pytest.approx(3352.3, abs=0.1)
    assert g.pcie_bandwidth_gbs == pytest.approx(63.0, abs=0.1)
    assert (g.pcie_gen_max, g.pcie_width_max) == (5, 16)
    assert g.compute_capability == "9.0"
    assert g.driver_version == "550.54.15" and g.cuda_version == "12.4"
    assert g.power_limit_w == 700.0
    assert g.uuid and g.uuid.startswith("GPU-")
    assert not g.mig_enabled
    assert api.initialised == 0, "nvmlInit must be paired with nvmlShutdown"


@pytest.mark.parametrize(
    "name, expect",
    [("no_driver", "driver is installed but not loaded"), ("no_library", "no NVIDIA driver installed")],
)
def test_init_failures_degrade_to_one_warning(name: str, expect: str) -> None:
    rep = read_nvidia(fake(name))
    assert rep.gpus == [] and not rep.available
    assert len(rep.warnings) == 1 and expect in rep.warnings[0]


def test_pynvml_not_installed() -> None:
    rep = read_nvidia(None, load=lambda: None)
    assert rep.gpus == [] and "not installed" in rep.warnings[0]


def test_real_pynvml_on_this_machine_never_raises() -> None:
    # This machine has no NVIDIA driver: the real binding must fail init and we must say so.
    rep = read_nvidia()
    if rep.available:  # pragma: no cover - only on a GPU box
        assert all(g.vram_total_bytes > 0 for g in rep.gpus)
    else:
        assert rep.gpus == [] and rep.warnings


def test_not_supported_fields_degrade_one_by_one() -> None:
    rep = read_nvidia(fake("not_supported"))
    (g,) = rep.gpus
    # what was readable is there
    assert g.name == "NVIDIA GeForce GTX 1080 Ti"
    assert g.vram_total_bytes == 11264 * MiB and g.vram_free_bytes == 10800 * MiB
    assert g.compute_capability == "6.1"
    # max width unsupported -> fall back to current width for the link figure
    assert g.pcie_width_max is None and g.pcie_width_current == 16
    assert g.pcie_bandwidth_gbs == pytest.approx(15.76, abs=0.01)
    # bandwidth cannot be derived
    assert g.memory_bus_width_bits is None and g.mem_bandwidth_gbs is None
    assert g.power_limit_w is None
    text = "\n".join(rep.warnings)
    assert "memory bus width: not supported" in text
    assert "max memory clock: not supported" in text
    assert "memory bandwidth unknown" in text
    # MIG NOT_SUPPORTED is the normal case for GeForce and must not be a warning
    assert "MIG" not in text


def test_two_gpus() -> None:
    rep = read_nvidia(fake("two_gpus"))
    assert [g.index for g in rep.gpus] == [0, 1]
    assert rep.gpus[0].uuid != rep.gpus[1].uuid
    for g in rep.gpus:
        assert g.mem_bandwidth_gbs == pytest.approx(936.1, abs=0.1)
        # idle link trained down to gen1; the figure uses the link's max (gen4 x8)
        assert g.pcie_gen_current == 1 and g.pcie_bandwidth_gbs == pytest.approx(15.75, abs=0.01)
    assert rep.gpus[0].vram_free_bytes < rep.gpus[1].vram_free_bytes
    assert rep.warnings == []


def test_mig_uses_first_instance() -> None:
    rep = read_nvidia(fake("mig"))
    (g,) = rep.gpus
    assert g.mig_enabled
    assert [m.index for m in g.mig_devices] == [0, 2], "an empty MIG slot (NOT_FOUND) is skipped silently"
    assert g.vram_total_bytes == 40192 * MiB and g.vram_free_bytes == 40150 * MiB
    assert g.card_vram_total_bytes == 81559 * MiB
    assert g.mem_bandwidth_gbs == pytest.approx(3352.3 * 40192 / 81559, abs=0.2)
    assert any("MIG is on with 2 instance(s)" in w for w in rep.warnings)


def test_mig_without_instances_offers_no_memory() -> None:
    rep = read_nvidia(fake("mig_empty"))
    (g,) = rep.gpus
    assert g.mig_enabled and g.vram_total_bytes == 0
    assert any("no MIG instances" in w for w in rep.warnings)


def test_lost_gpu_does_not_hide_the_others() -> None:
    rep = read_nvidia(fake("gpu_lost"))
    assert [g.name for g in rep.gpus] == ["NVIDIA H100 80GB HBM3"]
    assert any(w.startswith("GPU 1: handle") for w in rep.warnings)


@pytest.mark.parametrize("name", ["h100_sxm", "two_gpus", "not_supported", "mig", "gpu_lost"])
def test_capture_replays_to_the_same_rig(name: str) -> None:
    """capture_nvml(real NVML) writes what FakeNvml replays: capturing a replay reproduces the
    fixture's values, so a capture taken on a real GPU drives the same code paths."""
    original = json.loads((FIX / f"nvml_{name}.json").read_text())
    recaptured = capture_nvml(FakeNvml(original))
    a, b = read_nvidia(FakeNvml(original)), read_nvidia(FakeNvml(json.loads(json.dumps(recaptured))))
    assert [g.__dict__ for g in a.gpus] == [g.__dict__ for g in b.gpus]
    assert a.warnings == b.warnings


def test_capture_without_library() -> None:
    assert capture_nvml(FakeNvml({"init_error": 12})) == {"init_error": 12}


def test_error_descriptions() -> None:
    from moetui.hardware.fake_nvml import make_error

    assert nvidia.describe_nvml_error(make_error(3)) == "not supported by this GPU/driver"
    assert nvidia.describe_nvml_error(make_error(4)) == "permission denied"
    assert nvidia.cuda_version_str(12040) == "12.4" and nvidia.cuda_version_str(11080) == "11.8"
