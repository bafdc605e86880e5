"""Placement, context/KV choice, quant choice and the CLI, on rigs built from the dataclasses and on
real model headers (tiny proxies on disk; full-size shapes read from their exact in-memory header)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from moetui.errors import ConfigError, DoesNotFit
from moetui.hardware.rig import CPUInfo, GPUInfo, LlamaBuildInfo, MemoryInfo, Rig
from moetui.model.inspect import inspect_file
from moetui.sizing.memory import GIB
from moetui.sizing.overrides import layers_from_overrides
from moetui.sizing.plan import KV_Q8_MIN_GAIN, PlanOptions, plan
from moetui.sizing.quant_choice import choose_quant
from moetui.model.virtual import model_info_for_shape


def make_rig(vram_gib: list[float], ram_gib: float = 64, offload: bool = True) -> Rig:
    gpus = [GPUInfo(name=f"GPU{i}", vendor="nvidia", index=i, vram_total_bytes=int(v * GIB), vram_free_bytes=int(v * GIB),
                    mem_bandwidth_gbs=936.0, pcie_bandwidth_gbs=31.5) for i, v in enumerate(vram_gib)]
    return Rig(name="test rig", gpus=gpus, cpu=CPUInfo(physical_cores=8, logical_cores=16, flags=["AVX2"]),
               memory=MemoryInfo(total_bytes=int(ram_gib * GIB), available_bytes=int(ram_gib * GIB)),
               build=LlamaBuildInfo(installed=True, gpu_offload=offload), ram_bandwidth_gbs=60.0)


@pytest.fixture(scope="module")
def qwen30b():
    return model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")


def test_gpu_less_rig_runs_everything_on_cpu(tiny_moe):
    p = plan(inspect_file(tiny_moe), make_rig([]))
    assert p.mode == "cpu_only" and p.config.n_gpu_layers == 0 and not p.config.overrides
    assert all(dev == "CPU" for _, dev in p.placement)
    assert any("no GPU" in line for line in p.explanation)


def test_build_without_gpu_offload_is_cpu_only_and_says_why(tiny_moe):
    p = plan(inspect_file(tiny_moe), make_rig([24], offload=False))
    assert p.mode == "cpu_only" and p.config.n_gpu_layers == 0
    assert any("no GPU backend" in line for line in p.explanation)


def test_small_model_all_on_gpu(tiny_moe):
    p = plan(inspect_file(tiny_moe), make_rig([24]))
    assert p.mode == "all_gpu" and p.config.n_gpu_layers == -1 and not p.config.overrides
    assert dict(p.placement)["token_embd.weight"] == "CPU"  # llama.cpp keeps the input embedding on CPU
    assert dict(p.placement)["output.weight"] == "CUDA0"


@pytest.mark.parametrize("order", ["last", "first"])
def test_experts_split_keeps_one_end_of_the_model_in_ram_within_budget(qwen30b, order):
    t0 = time.perf_counter()
    p = plan(qwen30b, make_rig([12]), PlanOptions(n_ctx=16384, experts_in_ram=order))
    # interactive use wants well under a second; 2 s leaves room for a loaded, shared CI machine
    assert time.perf_counter() - t0 < 2.0
    assert p.mode == "experts_split" and p.config.n_gpu_layers == -1
    assert p.memory["CUDA0"].total <= p.budgets["CUDA0"]
    cpu_layers = [l.index for l in p.layers if l.experts_cpu]
    gpu_layers = [l.index for l in p.layers if l.experts_gpu]
    assert cpu_layers and gpu_layers
    if order == "first":  # --n-cpu-moe's way: the lowest layers in RAM
        assert max(cpu_layers) <= min(gpu_layers) and cpu_layers == list(range(len(cpu_layers)))
    else:  # llama.cpp's fit's way, the default: the highest layers in RAM
        n = qwen30b.n_layers
        assert min(cpu_layers) >= max(gpu_layers) and cpu_layers == list(range(n - len(cpu_layers), n))
        assert "highest layers first" in p.explanation[0] and p.n_cpu_moe is None
    # the overrides say exactly what the layer summary says
    parsed = layers_from_overrides(p.config.overrides)
    assert {il: set(l.experts_cpu) for l in p.layers if l.experts_cpu for il in [l.index]} == {
        il: ({"up", "gate", "down"} if len(parts) == 3 else parts) for il, parts in parsed.items()}
    # every tensor of a CPU part is on the CPU in the placement list
    dev = dict(p.placement)
    for l in p.layers:
        for part in l.experts_cpu:
            assert dev[f"blk.{l.index}.ffn_{part}_exps.weight"] == "CPU"
    assert 0 < p.decode_tps < 1000 and p.prompt_tps > 0


def test_whole_layer_boundary_is_exactly_n_cpu_moe(qwen30b):
    # find a budget where the boundary falls on a whole layer: the split plan's GPU total plus the
    # bytes of the boundary layer's GPU parts moved back to CPU
    base = plan(qwen30b, make_rig([12]), PlanOptions(n_ctx=8192, experts_in_ram="first"))
    split = [l for l in base.layers if l.experts_cpu and l.experts_gpu]
    if split:
        l = split[0]
        extra = sum(qwen30b.layers[l.index].expert_bytes[p] for p in l.experts_gpu)
        budget = base.memory["CUDA0"].total - extra + 1024
    else:
        budget = base.memory["CUDA0"].total + 1024
    p = plan(qwen30b, make_rig([12]), PlanOptions(n_ctx=8192, vram_budget_bytes=budget, vram_margin_bytes=0,
                                                  experts_in_ram="first"))
    assert p.n_cpu_moe is not None and p.n_cpu_moe > 0
    assert "--n-cpu-moe" in p.llama_args() and "-ot" not in p.llama_args()
    assert all((l.index < p.n_cpu_moe) == bool(l.experts_cpu) for l in p.layers)


def test_partial_layer_offload_when_dense_part_does_not_fit(qwen30b):
    """-ngl means what llama.cpp means (i_gpu_start = n_layer + 1 - n_gpu_layers): the output head and the
    last N - 1 layers on the GPU."""
    p = plan(qwen30b, make_rig([2.0]), PlanOptions(n_ctx=4096))
    assert p.mode == "partial_layers"
    assert 0 < p.config.n_gpu_layers < qwen30b.n_layers
    assert any("partial layer offload" in line for line in p.explanation)
    dev = dict(p.placement)
    assert all(dev[t.name] == "CPU" for t in qwen30b.tensors if t.expert_part)
    assert dev["output.weight"] == "CUDA0"
    on_gpu = [l.index for l in p.layers if l.device != "CPU"]
    assert on_gpu == list(range(qwen30b.n_layers + 1 - p.config.n_gpu_layers, qwen30b.n_layers))


def test_q8_0_cache_chosen_when_f16_cannot_hold_the_context(qwen30b):
    rig = make_rig([12])
    small = plan(qwen30b, rig, PlanOptions(n_ctx=8192, cache_type="f16"))
    assert small.config.cache_type_k == "f16"
    max_f16 = small.max_ctx
    assert max_f16 and max_f16 < qwen30b.context_length
    ask = min(qwen30b.context_length, int(max_f16 * 1.5))
    p = plan(qwen30b, rig, PlanOptions(n_ctx=ask))
    assert p.config.cache_type_k == "q8_0" == p.config.cache_type_v
    assert p.config.flash_attn == "on"
    assert any("q8_0 halves it" in line for line in p.explanation)


def test_with_experts_in_ram_a_q8_0_cache_buys_more_experts_on_the_gpu(qwen30b):
    rig = make_rig([12])
    f16 = plan(qwen30b, rig, PlanOptions(n_ctx=32768, cache_type="f16"))
    q8 = plan(qwen30b, rig, PlanOptions(n_ctx=32768))
    assert f16.mode == q8.mode == "experts_split"
    assert q8.config.cache_type_k == q8.config.cache_type_v == "q8_0" and q8.config.flash_attn == "on"
    assert q8.memory["CUDA0"].weights > f16.memory["CUDA0"].weights
    assert q8.memory["CUDA0"].total <= q8.budgets["CUDA0"]
    assert q8.decode_tps > f16.decode_tps and q8.turn_seconds < f16.turn_seconds * (1 - KV_Q8_MIN_GAIN)
    assert any("KV cache q8_0, not f16" in line and "--kv f16" in line for line in q8.explanation)
    assert q8.config.n_ctx == f16.config.n_ctx  # the cache type never trades the context away


def test_all_on_gpu_keeps_the_f16_cache(qwen30b):
    p = plan(qwen30b, make_rig([48]), PlanOptions(n_ctx=8192))
    assert p.mode == "all_gpu" and p.config.cache_type_k == "f16"
    assert not any("q8_0" in line for line in p.explanation)


def test_two_gpus_split_layers(qwen30b):
    p = plan(qwen30b, make_rig([12, 12]), PlanOptions(n_ctx=8192))
    assert p.config.tensor_split and len(p.config.tensor_split) == 2
    assert {"CUDA0", "CUDA1"} <= {l.device for l in p.layers}
    assert p.memory["CUDA0"].total <= p.budgets["CUDA0"] and p.memory["CUDA1"].total <= p.budgets["CUDA1"]


def test_an_unknown_experts_in_ram_order_is_refused(qwen30b):
    with pytest.raises(ConfigError, match="experts in RAM must be one of first, last"):
        plan(qwen30b, make_rig([12]), PlanOptions(experts_in_ram="middle"))


def test_does_not_fit_gives_shortfall(qwen30b):
    with pytest.raises(DoesNotFit, match=r"GiB short"):
        plan(qwen30b, make_rig([2], ram_gib=8))


def test_context_beyond_native_is_refused_with_limit(tiny_moe):
    m = inspect_file(tiny_moe)
    with pytest.raises(ConfigError, match=str(m.context_length)):
        plan(m, make_rig([24]), PlanOptions(n_ctx=m.context_length + 1))


def test_draft_model_placed(tiny_moe, tiny_draft):
    p = plan(inspect_file(tiny_moe), make_rig([24]), PlanOptions(draft=inspect_file(tiny_draft)))
    assert p.config.draft and p.config.draft.n_gpu_layers == -1
    assert any("draft" in line for line in p.explanation)


def test_measured_efficiency_factors_change_prediction(qwen30b):
    from moetui.sizing.speed import EfficiencyFactors

    a = plan(qwen30b, make_rig([12]), PlanOptions(n_ctx=8192))
    b = plan(qwen30b, make_rig([12]), PlanOptions(n_ctx=8192, efficiency=EfficiencyFactors(cpu_bw=0.3)))
    assert b.decode_tps < a.decode_tps
    # the Why says where the factors come from: the defaults, or the tune that measured them
    assert any("default efficiency factors" in line for line in a.explanation)
    tuned = plan(qwen30b, make_rig([12]), PlanOptions(n_ctx=8192, efficiency=EfficiencyFactors(source="tuner: rig / m")))
    assert not any("default efficiency factors" in line for line in tuned.explanation)
    assert any("a tune measured on this rig (tuner: rig / m)" in line for line in tuned.explanation)


def test_quant_choice_rejects_larger_quants_with_reasons(qwen30b):
    quants = [("Q8_0", 32_500_000_000), ("Q6_K", 25_100_000_000), ("Q4_K_M", 18_600_000_000), ("Q2_K", 11_300_000_000)]
    c = choose_quant(quants, qwen30b, make_rig([12], ram_gib=16), PlanOptions(n_ctx=8192), min_decode_tps=1.0)
    assert c.chosen is not None and c.plan is not None
    rejected = {v.quant: v.reason for v in c.rejected}
    assert "Q8_0" in rejected and "short" in rejected["Q8_0"]
    names = [v.quant for v in c.verdicts]
    assert names == sorted(names, key=lambda n: -dict(quants)[n])[: len(names)]
    # an impossible speed floor rejects everything, with the speed as reason
    c2 = choose_quant(quants, qwen30b, make_rig([12], ram_gib=16), PlanOptions(n_ctx=8192), min_decode_tps=1e6)
    assert c2.chosen is None and any("below" in v.reason for v in c2.verdicts)


def test_cli_plan_json_and_errors(tiny_moe):
    r = subprocess.run([sys.executable, "-m", "moetui", "plan", str(tiny_moe), "--rig", "rtx3060-ddr4-32", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mode"] == "all_gpu" and d["config"]["n_gpu_layers"] == -1 and d["llama_args"][:2] == ["-ngl", "999"]
    r = subprocess.run([sys.executable, "-m", "moetui", "plan", str(tiny_moe), "--rig", "rtx3060-ddr4-32", "--ctx", "99999999"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "native context" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- the workload: load mode, ubatch trade, seconds per turn ------------------------------------------
def test_experts_in_ram_go_to_pinned_memory_and_the_export_says_so(qwen30b):
    from moetui.export.commandline import export_command

    p = plan(qwen30b, make_rig([12]), PlanOptions(n_ctx=8192))
    assert p.mode == "experts_split" and p.config.load_mode == "none"
    assert any("pinned host memory" in line for line in p.explanation)
    assert p.memory["CPU"].repack == 0  # llama.cpp prefers the GPU's host buffers over CPU_REPACK
    argv = export_command(p.config, "bench").argv
    assert argv[argv.index("-lm") + 1] == "none"
    assert ["-lm", "none"] == p.llama_args()[-2:]


def test_pinning_is_refused_when_it_would_starve_the_system(qwen30b):
    p = plan(qwen30b, make_rig([8], ram_gib=15), PlanOptions(n_ctx=4096))
    assert p.memory["CPU"].weights > 0.7 * 15 * GIB
    assert p.mode == "experts_split" and p.config.load_mode == "auto"
    assert any("too little" in line for line in p.explanation)


def test_all_on_gpu_and_cpu_only_keep_llama_cpp_defaults(qwen30b, tiny_moe):
    assert plan(qwen30b, make_rig([48]), PlanOptions(n_ctx=8192)).config.load_mode == "auto"
    cpu = plan(inspect_file(tiny_moe), make_rig([]))
    assert (cpu.config.load_mode, cpu.config.n_ubatch) == ("auto", 512)


def test_the_ubatch_is_weighed_per_workload(qwen30b):
    from moetui.sizing.workload import WORKLOADS

    rig = make_rig([12])
    decode = plan(qwen30b, rig, PlanOptions(n_ctx=32768, workload=WORKLOADS["decode"]))
    long_prompt = plan(qwen30b, rig, PlanOptions(n_ctx=32768, workload=WORKLOADS["long-prompt"]))
    assert decode.config.n_ubatch == 512  # no prompt to amortise copies over
    assert long_prompt.config.n_ubatch >= 1024 and long_prompt.config.n_batch >= long_prompt.config.n_ubatch
    assert long_prompt.prompt_tps > 1.2 * decode.prompt_tps
    # each plan is the best of the trade for its own workload, by the same model
    wl = WORKLOADS["long-prompt"]
    assert wl.turn_seconds(long_prompt.prompt_tps, long_prompt.decode_tps) <= \
        wl.turn_seconds(decode.prompt_tps, decode.decode_tps)
    assert any("predicted seconds per turn" in line for line in long_prompt.explanation)
    # a given ubatch is kept
    fixed = plan(qwen30b, rig, PlanOptions(n_ctx=32768, n_ubatch=1024, workload=WORKLOADS["long-prompt"]))
    assert (fixed.config.n_ubatch, fixed.config.n_batch) == (1024, 2048)
    assert fixed.turn_seconds == pytest.approx(wl.turn_seconds(fixed.prompt_tps, fixed.decode_tps))


def test_pinned_copies_predict_faster_prompts_than_pageable(qwen30b):
    rig = make_rig([12])
    pinned = plan(qwen30b, rig, PlanOptions(n_ctx=8192, n_ubatch=512))
    mmap = plan(qwen30b, rig, PlanOptions(n_ctx=8192, n_ubatch=512, load_mode="auto"))
    assert pinned.config.load_mode == "none" and mmap.config.load_mode == "auto"
    assert 1.7 < pinned.prompt_tps / mmap.prompt_tps < 2.8  # 2.1x measured on an H200 at ubatch 512
    assert pinned.decode_tps == pytest.approx(mmap.decode_tps)


def test_plan_cli_takes_a_workload(tiny_moe):
    r = subprocess.run([sys.executable, "-m", "moetui", "plan", str(tiny_moe), "--rig", "auto", "--workload",
                        "long-prompt", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["workload"]["name"] == "long-prompt" and d["turn_seconds"] > 0
    bad = subprocess.run([sys.executable, "-m", "moetui", "plan", str(tiny_moe), "--workload", "lunch"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown workload" in bad.stderr
