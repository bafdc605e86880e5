"""Every architecture people bring, sized by llama.cpp's own accounting: per architecture a tiny GGUF the
project writes, llama.cpp's dry run (no_alloc) against its real allocation of the same config, the plan's
memory against both, and `inspect`'s figures against what llama.cpp logs."""

from __future__ import annotations

import re

import pytest

from moetui.model.inspect import inspect_file
from moetui.runtime.dry_run import check_plan, dry_run
from moetui.sizing.llama_log import parse_load_log
from moetui.sizing.memory import kv_cache_bytes
from moetui.sizing.plan import PlanOptions, plan

from hub_server import fake_hub, write_split_proxy  # noqa: F401  (fixture)
from test_sizing_plan import make_rig

MIB = 1 << 20
# shape preset -> (layers llama.cpp runs, attention layers, shared experts)
ARCHITECTURES = {
    "qwen3-30b-a3b": (4, 4, 0),
    "qwen3.5-35b-a3b": (4, 1, 1),
    "qwen3-next-80b-a3b": (4, 1, 1),
    "glm-4.5-air": (5, 5, 1),
    "glm-4.7-flash": (5, 5, 1),
    "deepseek-v3": (5, 5, 1),
    "minimax-m2": (4, 4, 0),
    "gpt-oss-20b": (4, 4, 0),
    "llama-4-scout-17b-16e": (4, 4, 1),
}


def _mix(shape: str) -> str:
    return "MXFP4" if shape.startswith("gpt-oss") else "Q4_K_M"


@pytest.mark.parametrize("shape", ARCHITECTURES)
def test_inspect_matches_what_llama_cpp_loads(tiny_model, shape: str) -> None:
    """Layers (next-token blocks skipped), experts, shared experts, attention vs recurrent layers, and the
    KV / recurrent-state bytes, as llama.cpp's real load logs them."""
    path = tiny_model(shape, _mix(shape))
    info = inspect_file(path)
    n_layers, n_attn, n_shared = ARCHITECTURES[shape]
    assert (info.n_layers, len(info.attention_layers), info.n_expert_shared) == (n_layers, n_attn, n_shared)
    cfg = plan(info, make_rig([]), PlanOptions(n_ctx=4096, n_ubatch=512)).config
    real = dry_run(cfg, allocate=True)
    log = real.log
    assert int(re.search(r"n_layer\s+= (\d+)", log).group(1)) == info.n_layers
    assert int(re.search(r"n_expert\s+= (\d+)", log).group(1)) == info.n_expert
    kv = re.search(r"llama_kv_cache: size =\s+([0-9.]+) MiB \(\s*(\d+) cells,\s+(\d+) layers", log)
    cells, kv_layers = int(kv.group(2)), int(kv.group(3))
    assert kv_layers == len([il for il in info.attention_layers if il not in info.swa_layers]) or info.swa_layers
    rs = re.search(r"llama_memory_recurrent:\s+\S+ RS buffer size =\s+([0-9.]+) MiB", log)
    if info.is_hybrid:
        assert abs(float(rs.group(1)) * MIB - info.recurrent_state_bytes(1)) <= 0.005 * MIB
    else:
        assert rs is None and info.recurrent_state_bytes(1) == 0
    if not info.swa_layers:
        assert abs(float(kv.group(1)) * MIB - info.kv_bytes_per_token("f16") * cells) <= 0.005 * MIB
    if info.nextn_layers:
        assert "unused tensor" in log and info.unused_bytes > 0
        assert not any(t.layer is not None and t.layer >= info.n_layers for t in info.tensors)


@pytest.mark.parametrize("shape", ARCHITECTURES)
def test_plan_memory_is_llama_cpp_s_own(tiny_model, shape: str) -> None:
    """The dry run equals llama.cpp's real allocation of the same config per buffer (the log's
    two-decimal MiB); the plan checked by it shows exactly those figures and says so; the formula's
    weights and KV (+ recurrent state) are right on their own (within 2%, never under)."""
    info = inspect_file(tiny_model(shape, _mix(shape)))
    p = plan(info, make_rig([]), PlanOptions(n_ctx=4096, n_ubatch=512))
    formula_weights, formula_kv = p.memory["CPU"].weights, p.memory["CPU"].kv
    dry = dry_run(p.config)
    real = dry_run(p.config, allocate=True)
    assert dry.devices == real.devices  # the breakdown after a real allocation: same bytes
    log = parse_load_log(real.log)
    got = dry.devices["CPU"]
    for mine, logged in ((got.model, log.model), (got.context, log.kv), (got.compute, log.compute)):
        rounding = 0.005 * MIB * len(logged)  # each logged buffer is rounded to 0.01 MiB
        assert -rounding <= mine - sum(logged.values()) <= rounding
    check = check_plan(p.memory, p.config)
    assert check.checked and "checked by llama.cpp's dry run" in check.note
    mem = p.memory["CPU"]
    assert (mem.weights, mem.kv, mem.compute) == (got.model, got.context, got.compute)
    assert got.model <= formula_weights <= 1.02 * got.model
    assert got.context <= formula_kv <= 1.02 * got.context


def test_hybrid_kv_counts_attention_layers_only(tiny_model) -> None:
    info = inspect_file(tiny_model("qwen3.5-35b-a3b"))
    assert info.is_hybrid and info.recurrent_layers == [0, 1, 2]
    # the recurrent state does not grow with the context; the attention layer's KV does
    grow = kv_cache_bytes(info, 8192) - kv_cache_bytes(info, 4096)
    assert grow == 4096 * info.kv_bytes_per_token("f16")


def test_unknown_architecture_is_planned_with_a_note(tmp_path, tiny_model) -> None:
    """An architecture llama.cpp does not know: inspected from its tensors, planned by the formula, and the
    plan says llama.cpp could not check it; never a traceback."""
    src = tiny_model("qwen3-30b-a3b").read_bytes()
    path = tmp_path / "unknown.gguf"
    # same length keeps every offset: qwen3moe -> qwen9zzz in the architecture value and every key
    path.write_bytes(src.replace(b"qwen3moe", b"qwen9zzz"))
    info = inspect_file(path)
    assert info.architecture == "qwen9zzz" and any("not in moetui's table" in n for n in info.notes)
    p = plan(info, make_rig([]), PlanOptions(n_ctx=2048))
    check = check_plan(p.memory, p.config)
    assert not check.checked and "formula's" in check.note and "qwen9zzz" in check.note


def test_ngl_means_what_llama_cpp_means(tiny_model, tmp_path) -> None:
    """-ngl N: the output head and the last N - 1 blocks (a next-token block counts as one) on the device,
    as llama.cpp's own load logs it with an RPC server as the offload device."""
    from rpc_helpers import rpc_servers  # noqa: PLC0415

    from moetui.config import RunConfig  # noqa: PLC0415
    from moetui.sizing.placement import llama_devices  # noqa: PLC0415

    path = tiny_model("glm-4.5-air")
    info = inspect_file(path)
    n_all = info.n_layers + info.nextn_layers
    with rpc_servers(tmp_path, n=1, cap=None) as procs:
        for ngl in (1, 2, 3, n_all + 1):
            log = dry_run(RunConfig(model_path=str(path), n_ctx=512, n_gpu_layers=ngl, rpc_servers=[procs[0][0]])).log
            logged = {int(il): dev for il, dev in re.findall(r"layer\s+(\d+) assigned to device (\S+),", log)}
            mine = llama_devices(n_all, ["RPC0"], [], ngl)
            assert [logged[il] for il in range(n_all + 1)] == mine
    assert llama_devices(n_all, ["RPC0"], [], 2)[: info.n_layers] == ["CPU"] * info.n_layers  # only the MTP block


def test_a_hub_model_is_dry_run_from_its_header_alone(fake_hub, tiny_moe, tmp_path) -> None:
    """Remote, split in two: its headers over sparse data give llama.cpp's dry run the same bytes as the
    local file, without the weights ever being fetched."""
    from moetui.hub.remote import inspect_remote  # noqa: PLC0415

    parts = write_split_proxy(tmp_path, "tiny-moe-Q4_K_M", n_parts=2)
    for p in parts:
        fake_hub.add_file("me/split-GGUF", p.name, p)
    info = inspect_remote("me/split-GGUF:Q4_K_M")
    assert len(info.header_parts) == 2
    p = plan(info, make_rig([]), PlanOptions(n_ctx=2048, n_ubatch=512))
    check = check_plan(p.memory, p.config, header_parts=info.header_parts)
    assert check.checked, check.note
    local = dry_run(p.config.replace(model_path=str(parts[0]))).devices["CPU"]
    mem = p.memory["CPU"]
    assert (mem.weights, mem.kv, mem.compute) == (local.model, local.context, local.compute)
    assert not any(e[0] == "GET" and e[2] and not e[2].startswith("bytes=0-") for e in fake_hub.log)


@pytest.mark.parametrize("shape", ["qwen3.5-35b-a3b", "qwen3-next-80b-a3b", "glm-4.5-air"])
def test_proxy_like_copies_hybrid_layers_and_next_token_blocks(tiny_model, tmp_path, shape: str) -> None:
    """`moetui proxy --like` of a hybrid or MTP model writes the same tensors (Gated DeltaNet layers, the
    unloaded next-token block) with the same bytes."""
    from moetui.model.proxy import write_proxy  # noqa: PLC0415
    from moetui.model.shapes import shape_from_info  # noqa: PLC0415

    src = inspect_file(tiny_model(shape))
    copy = inspect_file(write_proxy(shape_from_info(src), tmp_path / "like.gguf").path)
    assert sorted(t.name for t in copy.tensors) == sorted(t.name for t in src.tensors)
    assert (copy.total_bytes, copy.unused_bytes, copy.recurrent_layers) == (src.total_bytes, src.unused_bytes,
                                                                             src.recurrent_layers)


def test_dry_run_figures_replace_the_formula_and_are_held_to_the_budget() -> None:
    from moetui.runtime.dry_run import DeviceBytes  # noqa: PLC0415
    from moetui.sizing.dry_check import apply_dry_run  # noqa: PLC0415
    from moetui.sizing.memory import MemoryBreakdown  # noqa: PLC0415

    memory = {"CPU": MemoryBreakdown("CPU", weights=1000 * MIB, kv=100 * MIB, compute=50 * MIB, overhead=200 * MIB)}
    check = apply_dry_run(memory, {"CPU": DeviceBytes(1000 * MIB, 100 * MIB, 80 * MIB)}, {"CPU": 1350 * MIB})
    assert (memory["CPU"].compute, memory["CPU"].overhead) == (80 * MIB, 200 * MIB)  # runtime stays the formula's
    assert check.compared["CPU"]["compute"] == (50 * MIB, 80 * MIB) and round(check.worst_error(), 3) == -0.375
    assert "CPU compute 0.08 GiB (formula -38%)" in check.note and "exceeds the budget on CPU by 0.03 GiB" in check.note
