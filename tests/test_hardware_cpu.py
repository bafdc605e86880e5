"""CPU, memory, AMD sysfs and Apple sysctl readers against recorded trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from moetui.hardware import amd, apple, cpu

FIX = Path(__file__).parent / "fixtures" / "hardware"
GiB = 2**30


def test_parse_cpulist() -> None:
    assert cpu.parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert cpu.parse_cpulist("") == []


def test_recorded_epyc_kvm() -> None:
    w: list[str] = []
    c = cpu.read_cpu(FIX / "linux_epyc_kvm", w)
    assert c.model == "AMD EPYC"
    assert c.logical_cores == 2 and c.physical_cores == 2
    assert {"AVX", "AVX2", "FMA", "F16C"} <= set(c.flags)
    assert not any(f.startswith("AVX512") for f in c.flags)
    assert c.performance_cores is None
    assert c.numa_nodes == 1 and c.l3_cache_bytes == 32 * 2**20
    m = cpu.read_memory(FIX / "linux_epyc_kvm", w)
    assert 20 * GiB < m.total_bytes < 30 * GiB and 0 < m.available_bytes <= m.total_bytes
    assert m.swap_total_bytes == 0
    assert w == []


def test_hybrid_intel_p_and_e_cores() -> None:
    c = cpu.read_cpu(FIX / "linux_hybrid_12600k")
    assert c.model == "12th Gen Intel(R) Core(TM) i5-12600K"
    assert c.logical_cores == 16 and c.physical_cores == 10
    assert (c.performance_cores, c.efficiency_cores) == (6, 4)
    assert "AVX_VNNI" in c.flags and "AVX512" not in c.flags
    assert c.l3_cache_bytes == 20 * 2**20


def test_arm_server_flags_and_numa() -> None:
    w: list[str] = []
    c = cpu.read_cpu(FIX / "linux_graviton3", w)
    assert c.arch == "aarch64"
    assert {"NEON", "DOTPROD", "MATMUL_INT8", "SVE", "BF16"} <= set(c.flags)
    assert c.numa_nodes == 2 and c.logical_cores == 4
    # no "physical id"/"core id" on ARM: physical falls back to logical, and says so
    assert c.physical_cores == 4 and any("physical core count unknown" in x for x in w)


def test_live_cpu_and_memory() -> None:
    w: list[str] = []
    c = cpu.read_cpu("/", w)
    assert c.logical_cores >= 1 and 1 <= c.physical_cores <= c.logical_cores
    m = cpu.read_memory("/", w)
    assert m.total_bytes > 0 and 0 < m.available_bytes <= m.total_bytes


def test_psutil_denied_falls_back_to_proc_meminfo(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    def denied() -> None:
        raise PermissionError("denied by sandbox")

    monkeypatch.setattr(psutil, "virtual_memory", denied)
    w: list[str] = []
    m = cpu.read_memory("/", w)
    assert m.total_bytes > 0 and m.available_bytes > 0
    assert any("psutil failed" in x and "denied" in x for x in w)


def test_no_meminfo_at_all(tmp_path: Path) -> None:
    w: list[str] = []
    m = cpu.read_memory(tmp_path, w)
    assert m.total_bytes == 0 and any("RAM size unknown" in x for x in w)


def test_amd_sysfs() -> None:
    w: list[str] = []
    gpus = amd.read_amd(FIX / "amd_sysfs", w)
    assert [g.vendor for g in gpus] == ["amd", "amd"], "the Intel iGPU and the connector dir are skipped"
    xtx, unknown = gpus
    assert "7900" in xtx.name
    assert xtx.vram_total_bytes == 25753026560
    assert xtx.vram_free_bytes == 25753026560 - 1361051648
    assert xtx.mem_bandwidth_gbs == 960.0
    # link idles at 2.5 GT/s; the figure is the link's max: gen4 x16
    assert (xtx.pcie_gen_current, xtx.pcie_gen_max) == (1, 4)
    assert xtx.pcie_bandwidth_gbs == pytest.approx(31.5, abs=0.1)
    assert xtx.pci_bus_id == "0000:03:00.0"
    assert unknown.mem_bandwidth_gbs is None and unknown.vram_free_bytes == 8 * GiB
    text = "\n".join(w)
    assert "memory bandwidth unknown for PCI id 0x1234" in text
    assert "mem_info_vram_used unreadable" in text


def test_amd_absent(tmp_path: Path) -> None:
    assert amd.read_amd(tmp_path / "nope") == []


def test_apple_m3_max_sysctl() -> None:
    w: list[str] = []
    c, m, gpus = apple.read_apple((FIX / "apple_m3max_sysctl.txt").read_text(), w)
    assert c.model == "Apple M3 Max" and c.arch == "arm64"
    assert (c.physical_cores, c.performance_cores, c.efficiency_cores) == (16, 12, 4)
    assert {"NEON", "DOTPROD", "MATMUL_INT8", "BF16"} <= set(c.flags) and "SME" not in c.flags
    assert m.total_bytes == 128 * GiB
    (g,) = gpus
    assert g.unified_memory and g.pcie_bandwidth_gbs is None
    assert g.vram_total_bytes == 96 * GiB  # Metal's 3/4 working-set cap
    assert g.mem_bandwidth_gbs == 400.0
    assert w == []


def test_apple_binned_chip_and_wired_limit() -> None:
    res = apple.read_apple((FIX / "apple_m3max_14c_36gb_sysctl.txt").read_text())
    assert res is not None
    (g,) = res[2]
    assert g.mem_bandwidth_gbs == 300.0  # the 14-core M3 Max bin
    assert g.vram_total_bytes == 30000 * 2**20  # iogpu.wired_limit_mb overrides the heuristic


def test_apple_not_apple_silicon() -> None:
    assert apple.read_apple("machdep.cpu.brand_string: Intel(R) Core(TM) i9-9980HK\nhw.memsize: 1\n") is None
    assert apple.read_apple(None) is None
