"""Rig schema, presets, fingerprint, llama.cpp build reading, detect_rig end to end and the CLI."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from moetui.errors import ConfigError
from moetui.hardware import detect, llama_build
from moetui.hardware.fake_nvml import FakeNvml
from moetui.hardware.fingerprint import fingerprint, hardware_key
from moetui.hardware.presets import list_presets, load_preset, load_rig, rig_to_toml
from moetui.hardware.rig import GPUInfo, LlamaBuildInfo, LlamaDevice, Rig

FIX = Path(__file__).parent / "fixtures" / "hardware"
REPO = Path(__file__).resolve().parents[1]


def _pythonpath(*first: Path) -> str:
    """These folders first, then whatever PYTHONPATH already holds (a GPU box brings deps that way)."""
    return os.pathsep.join([*(str(p) for p in first), *filter(None, [os.environ.get("PYTHONPATH")])])
GiB = 2**30

EXPECTED_PRESETS = {"rtx4090-ddr5-64", "rtx3060-ddr4-32", "2x3090-ddr4-128", "rtx5090-ddr5-96", "m3max-128", "h100-sxm-80"}


def _detect(**kw: object) -> Rig:
    kw.setdefault("measure_bandwidth", False)
    kw.setdefault("sysctl_text", None)
    return detect.detect_rig(**kw)  # type: ignore[arg-type]


# ---- schema ---------------------------------------------------------------------------------


def test_roundtrip_to_dict_from_dict() -> None:
    rig = _detect(nvml=FakeNvml.from_file(FIX / "nvml_mig.json"))
    d = rig.to_dict()
    json.dumps(d)  # JSON-able
    back = Rig.from_dict(json.loads(json.dumps(d)))
    assert back == rig
    assert back.gpus[0].mig_devices[0].uuid.startswith("MIG-")


def test_from_dict_tolerates_missing_and_unknown_keys() -> None:
    r = Rig.from_dict({"name": "x", "future_field": 1, "gpus": [{"name": "G", "vram_total_bytes": 5, "new": 2}], "build": {"devices": [{"name": "CPU"}]}})
    assert r.gpus[0].vram_total_bytes == 5 and r.gpus[0].mem_bandwidth_gbs is None
    assert r.cpu.physical_cores == 1 and r.build.devices[0].name == "CPU"
    assert Rig.from_dict({}).name == "unnamed rig"


# ---- presets --------------------------------------------------------------------------------


def test_all_presets_load_and_are_usable_for_sizing() -> None:
    assert EXPECTED_PRESETS <= set(list_presets())
    fps = set()
    for name in list_presets():
        r = load_preset(name)
        assert r.source == "preset" and r.fingerprint.startswith("preset-")
        assert r.ram_bandwidth_gbs and r.memory.total_bytes > 0 and r.memory.available_bytes <= r.memory.total_bytes
        assert r.cpu.physical_cores >= 1 and r.cpu.flags
        assert r.build.gpu_offload and r.build.backends
        assert r.ram_bandwidth_gbs <= (r.memory.theoretical_bandwidth_gbs or 1e9), "measured cannot beat peak"
        for g in r.gpus:
            assert 0 < g.vram_free_bytes <= g.vram_total_bytes
            assert g.mem_bandwidth_gbs and g.mem_bandwidth_gbs > 100
            assert g.unified_memory or g.pcie_bandwidth_gbs
        fps.add(r.fingerprint)
    assert len(fps) == len(list_presets())


@pytest.mark.parametrize(
    "name, gpus, bw, pcie",
    [
        ("rtx4090-ddr5-64", 1, 1008, 31.5),
        ("rtx3060-ddr4-32", 1, 360, 31.5),
        ("2x3090-ddr4-128", 2, 936, 15.75),
        ("rtx5090-ddr5-96", 1, 1792, 63.0),
        ("h100-sxm-80", 1, 3352, 63.0),
    ],
)
def test_preset_published_figures(name: str, gpus: int, bw: float, pcie: float) -> None:
    from moetui.hardware.nvidia import memory_bandwidth_gbs

    r = load_preset(name)
    assert len(r.gpus) == gpus
    for g in r.gpus:
        assert g.mem_bandwidth_gbs == pytest.approx(bw, rel=0.002)
        # a preset's stated bandwidth agrees with its own bus width and clock (same formula as NVML)
        assert memory_bandwidth_gbs(g.memory_bus_width_bits, g.max_mem_clock_mhz) == pytest.approx(g.mem_bandwidth_gbs, abs=0.1)
        assert g.pcie_bandwidth_gbs == pytest.approx(pcie, abs=0.05)


def test_m3_max_preset_is_unified() -> None:
    r = load_preset("M3MAX-128.toml")  # case and suffix insensitive
    (g,) = r.gpus
    assert g.unified_memory and g.pcie_bandwidth_gbs is None and g.vram_total_bytes == 96 * GiB
    assert r.cpu.performance_cores == 12


def test_unknown_preset_lists_available() -> None:
    with pytest.raises(ConfigError, match="rtx4090-ddr5-64"):
        load_rig("gtx-9999")


def test_bad_preset_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rigs").mkdir()
    (tmp_path / "rigs" / "bad.toml").write_text('name = "bad"\n[[gpus]]\nname = "G"\nvram_total_bytes = 1\n')
    monkeypatch.setenv("MOETUI_PRESETS", str(tmp_path))
    with pytest.raises(ConfigError, match="bad.toml"):
        load_preset("bad")


def test_toml_writer_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A detected rig saved as a preset loads back to the same figures (same schema both ways)."""
    rig = _detect(nvml=FakeNvml.from_file(FIX / "nvml_two_gpus.json"))
    rig.ram_bandwidth_gbs = 40.0
    text = rig_to_toml(rig)
    tomllib.loads(text)
    (tmp_path / "rigs").mkdir()
    (tmp_path / "rigs" / "mine.toml").write_text(text)
    monkeypatch.setenv("MOETUI_PRESETS", str(tmp_path))
    back = load_rig("mine")
    assert back.source == "preset"
    assert [g.__dict__ for g in back.gpus] == [g.__dict__ for g in rig.gpus]
    assert back.cpu == rig.cpu and back.memory == rig.memory and back.build == rig.build


# ---- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_stable_under_free_memory_changes_only() -> None:
    rig = load_preset("2x3090-ddr4-128")
    rig.source = "detected"
    base = fingerprint(rig)
    same = copy.deepcopy(rig)
    same.gpus[0].vram_free_bytes -= 5 * GiB
    same.memory.available_bytes -= 10 * GiB
    same.memory.total_bytes += 37 * 2**20  # kernel reservation drift
    same.ram_bandwidth_gbs = 12.3
    same.gpus[0].uuid = "GPU-other-card-same-model"
    same.gpus[0].pcie_gen_current = 1
    assert fingerprint(same) == base
    # hardware changes
    fewer = copy.deepcopy(rig)
    fewer.gpus.pop()
    assert fingerprint(fewer) != base
    more_ram = copy.deepcopy(rig)
    more_ram.memory.total_bytes *= 2
    assert fingerprint(more_ram) != base
    # build changes, hardware key does not
    cpu_build = copy.deepcopy(rig)
    cpu_build.build.backends = ["CPU"]
    cpu_build.build.gpu_offload = False
    assert fingerprint(cpu_build) != base
    assert hardware_key(cpu_build) == hardware_key(rig)


def test_detected_fingerprint_repeatable() -> None:
    a, b = _detect(), _detect()
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("rig-")


# ---- llama.cpp build ------------------------------------------------------------------------


def test_installed_build_is_read_through_ggml() -> None:
    w: list[str] = []
    b = llama_build.read_llama_build(w)
    assert b.installed and b.version
    assert "CPU" in b.backends
    cpu = [d for d in b.devices if d.type == "cpu"]
    assert cpu and cpu[0].memory_total_bytes and cpu[0].memory_total_bytes > GiB
    assert b.system_info and "CPU" in b.system_info
    assert w == []


def test_llama_cpp_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import raises ImportError
    w: list[str] = []
    b = llama_build.read_llama_build(w)
    assert not b.installed and any("not importable" in x for x in w)
    assert "pip install" in (llama_build.advise(b, []) or "")


def test_advice_for_cpu_only_build_on_gpu_rigs() -> None:
    cpu_only = LlamaBuildInfo(installed=True, backends=["CPU"], devices=[LlamaDevice(name="CPU", type="cpu")])
    nv = [GPUInfo(name="NVIDIA GeForce RTX 4090", vendor="nvidia")]
    msg = llama_build.advise(cpu_only, nv)
    assert msg and "RTX 4090" in msg and "CPU-only" in msg
    assert 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python' in msg
    assert llama_build.advise(LlamaBuildInfo(installed=True, backends=["CUDA", "CPU"], gpu_offload=True), nv) is None
    apple = [GPUInfo(name="Apple M3 Max GPU", vendor="apple", unified_memory=True)]
    assert "GGML_METAL" in (llama_build.advise(cpu_only, apple) or "")
    assert llama_build.advise(LlamaBuildInfo(installed=True, backends=["Metal", "CPU"], gpu_offload=True), apple) is None
    assert llama_build.advise(cpu_only, []) is None


# ---- detect_rig end to end ------------------------------------------------------------------


@pytest.mark.skipif(__import__("llama_cpp").llama_supports_gpu_offload(), reason="needs this machine's CPU-only build")
def test_detect_h100_with_this_cpu_only_build_says_so_plainly() -> None:
    """Real llama-cpp-python (CPU-only here) + a recorded H100: the mismatch is reported with the fix."""
    rig = _detect(nvml=FakeNvml.from_file(FIX / "nvml_h100_sxm.json"))
    assert rig.gpus[0].name == "NVIDIA H100 80GB HBM3" and rig.has_nvidia
    assert not rig.build.gpu_offload and rig.build.backends == ["CPU"]
    assert rig.build.advice and "-DGGML_CUDA=on" in rig.build.advice
    assert any("CPU-only build" in w for w in rig.warnings)
    assert rig.name.startswith("NVIDIA H100 80GB HBM3 + ")


def test_detect_from_recorded_trees() -> None:
    rig = _detect(
        nvml=FakeNvml.from_file(FIX / "nvml_no_library.json"),
        root=FIX / "linux_hybrid_12600k",
        drm_root=FIX / "amd_sysfs",
        llama=False,
    )
    assert rig.cpu.performance_cores == 6
    assert 31 * GiB < rig.memory.total_bytes < 32 * GiB
    assert [g.vendor for g in rig.gpus] == ["amd", "amd"] and [g.index for g in rig.gpus] == [0, 1]
    assert any("no NVIDIA driver installed" in w for w in rig.warnings)


def test_detect_apple_from_sysctl() -> None:
    rig = detect.detect_rig(measure_bandwidth=False, sysctl_text=(FIX / "apple_m3max_sysctl.txt").read_text(),
                            nvml=FakeNvml({"init_error": 12}), root=FIX / "empty-root", llama=False)
    assert rig.cpu.model == "Apple M3 Max" and rig.gpus[0].unified_memory
    assert rig.gpus[0].mem_bandwidth_gbs == 400.0


def test_detect_with_bandwidth_probe_and_cache() -> None:
    first = detect.detect_rig(sysctl_text=None)
    assert first.ram_bandwidth_gbs and first.ram_bandwidth_gbs > 0.5
    assert first.bandwidth_probe and not first.bandwidth_probe.cached
    second = detect.detect_rig(sysctl_text=None)
    assert second.bandwidth_probe and second.bandwidth_probe.check_gbs  # a quick check of the cached figure
    if second.bandwidth_probe.note.startswith("re-measured:"):  # the check read 1.5x more: a better figure
        assert second.ram_bandwidth_gbs > first.ram_bandwidth_gbs
    else:
        assert second.bandwidth_probe.cached and second.ram_bandwidth_gbs == first.ram_bandwidth_gbs
    assert second.fingerprint == first.fingerprint


def test_detect_survives_a_reader_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("odd kernel")

    monkeypatch.setattr(detect.cpu, "read_cpu", broken)
    monkeypatch.setattr(detect.amd, "read_amd", broken)
    rig = _detect(llama=False)
    assert rig.cpu.physical_cores == 1
    assert any("CPU: detection failed (RuntimeError: odd kernel)" in w for w in rig.warnings)
    assert any("AMD GPUs: detection failed" in w for w in rig.warnings)


def test_load_rig_auto_detects() -> None:
    rig = load_rig("auto", measure_bandwidth=False)
    assert rig.source == "detected" and rig.memory.total_bytes > 0


# ---- CLI ------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=_pythonpath(REPO))
    return subprocess.run([sys.executable, "-m", "moetui", "detect", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False)


def test_cli_json_and_table_within_budget() -> None:
    t = time.perf_counter()
    p = _cli("--json")  # cold: runs the bandwidth probe (fresh cache dir from conftest)
    wall = time.perf_counter() - t
    assert p.returncode == 0, p.stderr
    rig = Rig.from_dict(json.loads(p.stdout))
    assert rig.ram_bandwidth_gbs and rig.fingerprint.startswith("rig-")
    assert rig.bandwidth_probe and not rig.bandwidth_probe.cached
    assert rig.bandwidth_probe.measured_at and abs(time.time() - rig.bandwidth_probe.measured_at) < 60  # when
    # 2 s is the budget on an idle machine; allow slack for a loaded CI box, report the real figure.
    assert wall < 4.0, f"moetui detect --json took {wall:.2f} s"
    p = _cli()
    assert p.returncode == 0, p.stderr
    for word in ("RAM bandwidth", "llama.cpp", "ISA", "fingerprint"):
        assert word in p.stdout
    assert "measured just now, " in p.stdout  # the cached figure, and when it was measured


def test_cli_preset_and_list() -> None:
    p = _cli("--rig", "h100-sxm-80")
    assert p.returncode == 0 and "NVIDIA H100 80GB HBM3" in p.stdout and "3,352.3 GB/s" in p.stdout
    p = _cli("--rig", "list")
    assert set(p.stdout.split()) >= EXPECTED_PRESETS
    p = _cli("--rig", "nope")
    assert p.returncode == 2 and "no reference rig named" in p.stderr


def test_cli_capture_nvml(tmp_path: Path) -> None:
    out = tmp_path / "cap.json"
    p = _cli("--no-bandwidth", "--capture-nvml", str(out), "--json")
    assert p.returncode == 0, p.stderr
    cap = json.loads(out.read_text())
    # this machine has no NVIDIA driver: the capture records that, and replays to the same result
    assert "init_error" in cap or cap.get("devices")
    json.loads(p.stdout)
