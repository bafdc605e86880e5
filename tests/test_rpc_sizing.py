"""The pure side of planning across hosts: when a second machine makes a model fit, what -ngl/-ts say,
what the network costs per token and at load, and the moetui spelling of servers."""

from __future__ import annotations

import pytest

from moetui.errors import DoesNotFit, MoetuiError
from moetui.hardware.rig import CPUInfo, LlamaBuildInfo, MemoryInfo, Rig
from moetui.hardware.rpc import RemoteDevice, parse_endpoints, parse_size
from moetui.sizing.memory import GIB
from moetui.sizing.plan import PlanOptions, plan
from moetui.sizing.remote import NetworkModel, load_estimate, split_layers
from moetui.model.virtual import model_info_for_shape


@pytest.fixture(scope="module")
def qwen235b():
    return model_info_for_shape("qwen3-235b-a22b", "Q4_K_M")  # ~133 GB of weights


def cpu_host(ram_gib: float) -> Rig:
    return Rig(name="cpu host", cpu=CPUInfo(physical_cores=16, logical_cores=32, flags=["AVX2"]),
               memory=MemoryInfo(total_bytes=int(ram_gib * GIB), available_bytes=int(ram_gib * GIB)),
               build=LlamaBuildInfo(installed=True), ram_bandwidth_gbs=80.0)


def server(port: int, gib: float, link_gbs: float | None = None, rtt_s: float = 250e-6) -> RemoteDevice:
    ep = f"192.168.1.{port % 200}:{port}"
    return RemoteDevice(endpoint=ep, buffer_type=f"RPC0[{ep}]", backend="CPU", memory_free_bytes=int(gib * GIB),
                        memory_total_bytes=int(gib * GIB), rtt_s=rtt_s, link_gbs=link_gbs)


def test_a_second_host_makes_it_fit_and_the_plan_says_so(qwen235b) -> None:
    alone = cpu_host(96)
    with pytest.raises(DoesNotFit):
        plan(qwen235b, alone, PlanOptions(n_ctx=8192))
    rig = cpu_host(96)
    rig.remotes = [server(50052, 64, link_gbs=1.17)]
    p = plan(qwen235b, rig, PlanOptions(n_ctx=8192))
    assert p.mode == "rpc_split" and p.config.rpc_servers == [rig.remotes[0].endpoint]
    n = qwen235b.n_layers
    here = [l.index for l in p.layers if l.device == "CPU"]
    assert here == list(range(len(here))) and 0 < len(here) < n
    # -ngl counts the output head as a layer; -ts in whole layers, so llama.cpp's split is exact
    assert p.config.n_gpu_layers == n - len(here) + 1 and p.config.tensor_split == [float(n - len(here) + 1)]
    assert any("makes it fit" in line and "192.168.1." in line for line in p.explanation)
    assert any(line.startswith("first load sends") for line in p.explanation)
    assert p.decode_tps > 0 and p.speed.hops_per_token == 2
    assert p.memory["CPU"].total <= p.budgets["CPU"]
    assert p.memory[rig.remotes[0].buffer_type].total <= p.budgets[rig.remotes[0].buffer_type]


def test_too_small_a_second_host_says_how_much_is_missing(qwen235b) -> None:
    rig = cpu_host(96)
    rig.remotes = [server(50052, 8)]
    with pytest.raises(DoesNotFit, match=r"add a host with at least [0-9.]+ GiB free"):
        plan(qwen235b, rig, PlanOptions(n_ctx=8192))


def test_a_model_that_fits_here_leaves_the_servers_out(tiny_moe) -> None:
    from moetui.model.inspect import inspect_file

    rig = cpu_host(64)
    rig.remotes = [server(50052, 64)]
    p = plan(inspect_file(tiny_moe), rig)
    assert not p.config.rpc_servers and p.mode == "cpu_only"
    assert any("not used" in line for line in p.explanation)


def test_a_slower_link_costs_decode_speed_and_load_time(qwen235b) -> None:
    speeds, loads = [], []
    for link in (1.17, 0.117):  # 10 GbE, 1 GbE
        rig = cpu_host(96)
        rig.remotes = [server(50052, 64, link_gbs=link)]
        p = plan(qwen235b, rig, PlanOptions(n_ctx=8192))
        speeds.append(p.decode_tps)
        loads.append(p.explanation)
    assert speeds[0] > speeds[1]
    rig.remotes = [server(50052, 64, link_gbs=0.117)]
    shares = split_layers(qwen235b, int(94 * GIB), rig.remotes, 8192, "f16", 512, True)
    est = load_estimate(qwen235b, shares, NetworkModel.for_devices(rig.remotes))
    assert est.remote_bytes > 0 and est.cached_s < est.first_s
    assert est.first_s == pytest.approx(est.remote_bytes / 0.117e9)


def test_server_spellings() -> None:
    eps = parse_endpoints("10.0.0.2:50052=24GiB, box:6000,[fe80::1]:7000")
    assert [e.address for e in eps] == ["10.0.0.2:50052", "box:6000", "[fe80::1]:7000"]
    assert eps[0].limit_bytes == 24 * GIB and eps[1].limit_bytes is None
    assert parse_endpoints("h")[0].port == 50052
    assert parse_size("1.5g") == int(1.5 * GIB) and parse_size("512MiB") == 512 << 20
    for bad in ("h:0", "h:99999", "a:1,a:1", "h:1=lots"):
        with pytest.raises(MoetuiError):
            parse_endpoints(bad)
