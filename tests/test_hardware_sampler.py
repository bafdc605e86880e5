"""The 2 Hz live sampler against recorded captures, and its cost."""

from __future__ import annotations

import time
from pathlib import Path

from moetui.hardware.fake_nvml import FakeNvml
from moetui.hardware.sampler import Sampler

FIX = Path(__file__).parent / "fixtures" / "hardware"
GiB = 2**30


def test_two_gpus_sample() -> None:
    api = FakeNvml.from_file(FIX / "nvml_two_gpus.json")
    with Sampler(api) as s:
        assert s.error is None
        smp = s.sample()
    assert [g.index for g in smp.gpus] == [0, 1]
    g0, g1 = smp.gpus
    assert g0.name == "NVIDIA GeForce RTX 3090"
    assert g0.vram_used_bytes == 18 * GiB + 400 * 2**20 and g0.vram_total_bytes == 24 * GiB
    assert g0.processes == {4242: 18 * GiB} and g1.processes == {}
    assert (g0.power_w, g0.temperature_c, g1.util_gpu_pct) == (28.0, 40, 3)
    assert smp.ram_used_bytes and smp.ram_available_bytes and smp.cpu_pct is not None
    assert api.initialised == 0, "close() shuts NVML down"


def test_unsupported_fields_are_not_retried() -> None:
    api = FakeNvml.from_file(FIX / "nvml_not_supported.json")
    s = Sampler(api)
    first = s.sample()
    assert first.gpus[0].power_w is None and first.gpus[0].processes == {}
    assert first.gpus[0].vram_used_bytes == 464 * 2**20 and first.gpus[0].temperature_c == 35
    before = dict(api.calls)
    for _ in range(5):
        s.sample()
    assert api.calls["nvmlDeviceGetPowerUsage"] == before["nvmlDeviceGetPowerUsage"] == 1
    assert api.calls["nvmlDeviceGetComputeRunningProcesses"] == 1
    assert api.calls["nvmlDeviceGetMemoryInfo"] == before["nvmlDeviceGetMemoryInfo"] + 5
    s.close()


def test_no_driver_still_samples_ram() -> None:
    s = Sampler(FakeNvml.from_file(FIX / "nvml_no_driver.json"))
    assert s.error == "the NVIDIA driver is not loaded"  # in words, not NVML's "Driver Not Loaded"
    smp = s.sample()
    assert smp.gpus == [] and smp.ram_available_bytes
    s.close()


def test_real_sampler_is_cheap_enough_for_2hz() -> None:
    """The real binding on this machine (no NVIDIA driver) plus psutil: far under the 500 ms tick."""
    with Sampler() as s:
        s.sample()
        t = time.perf_counter()
        for _ in range(20):
            s.sample()
        per = (time.perf_counter() - t) / 20
    assert per < 0.05, f"{per * 1000:.1f} ms per sample"


def test_fake_eight_gpus_sample_cost() -> None:
    import json

    cap = json.loads((FIX / "nvml_h100_sxm.json").read_text())
    cap["devices"] = cap["devices"] * 8
    with Sampler(FakeNvml(cap)) as s:
        t = time.perf_counter()
        for _ in range(20):
            smp = s.sample()
        per = (time.perf_counter() - t) / 20
    assert len(smp.gpus) == 8 and per < 0.05
