"""Memory predictions against what llama.cpp itself allocates (its load log), on real tiny proxies."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moetui.hardware.cpu import read_cpu
from moetui.model.inspect import inspect_file
from moetui.sizing.llama_log import parse_load_log
from moetui.sizing.memory import compute_buffer_bytes, kv_cache_bytes
from moetui.sizing.placement import Assignment, MemorySettings, memory_by_device

from conftest import repack_ok

WORKER = r"""
import sys, llama_cpp
from llama_cpp import Llama
from moetui.hardware.repack import make_llama_cpp_safe
make_llama_cpp_safe()
path, n_ctx, n_ub, fa, kv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "on", sys.argv[5]
kw = dict(model_path=path, n_ctx=n_ctx, n_batch=max(n_ub, 512), n_ubatch=n_ub, verbose=True, n_gpu_layers=0, flash_attn=fa)
if kv != "f16":
    t = {"q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}[kv]
    kw["type_k"] = t; kw["type_v"] = t
Llama(**kw)
"""


def llama_alloc(path, n_ctx, n_ub, fa, kv):
    r = subprocess.run([sys.executable, "-c", WORKER, str(path), str(n_ctx), str(n_ub), fa, kv],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return parse_load_log(r.stderr)


CASES = [
    ("qwen3-30b-a3b", 2048, 512, "off", "f16"),
    ("qwen3-30b-a3b", 4096, 128, "on", "q8_0"),
    ("gpt-oss-20b", 3000, 256, "on", "f16"),  # SWA layers: full-size cache (swa_full); n_ctx padded to 256
    ("deepseek-v2-lite", 8192, 512, "off", "f16"),  # MLA
    ("qwen3-0.6b", 1024, 512, "on", "q4_0"),  # dense
]


@pytest.mark.parametrize("shape,n_ctx,n_ub,fa,kv", CASES)
def test_weights_kv_compute_match_llama_cpp(tiny_model, shape, n_ctx, n_ub, fa, kv):
    path = tiny_model(shape)
    model = inspect_file(path)
    log = llama_alloc(path, n_ctx, n_ub, fa, kv)
    a = Assignment([], ["CPU"] * model.n_layers, output_device="CPU", n_gpu_layers=0)
    cpu = read_cpu()
    flags = cpu.flags if repack_ok() else []  # --no-repack: no CPU_REPACK copies
    mem = memory_by_device(model, a, MemorySettings(n_ctx, kv, kv, n_ub, fa == "on"), flags, cpu.arch)["CPU"]

    mapped = log.model["CPU_Mapped"]
    assert abs(mem.weights / mapped - 1) < 0.03, (mem.weights, mapped)
    repack = log.model.get("CPU_REPACK", 0)
    assert abs(mem.repack - repack) <= 0.03 * max(repack, 1), (mem.repack, repack)
    assert abs(mem.kv / log.kv_total - 1) < 0.03, (mem.kv, log.kv_total)
    assert abs((mem.weights + mem.kv) / (mapped + log.kv_total) - 1) < 0.03
    # compute buffer: a fitted formula; measured error over the calibration grid is <= 9% (mean 1%)
    assert abs(mem.compute / log.compute_total - 1) < 0.10, (mem.compute, log.compute_total)


def test_kv_scales_with_context_and_type(tiny_moe):
    m = inspect_file(tiny_moe)
    f16 = kv_cache_bytes(m, 4096)
    assert kv_cache_bytes(m, 8192) == 2 * f16
    assert kv_cache_bytes(m, 4096, "q8_0", "q8_0") == pytest.approx(f16 * 34 / 64, rel=1e-6)
    assert kv_cache_bytes(m, 4000) == f16  # padded to 256 cells


def test_swa_cache_full_size_unless_asked(tiny_model):
    m = inspect_file(tiny_model("gpt-oss-20b"))
    assert m.swa_layers
    assert kv_cache_bytes(m, 8192, swa_full=False) < kv_cache_bytes(m, 8192, swa_full=True)


def test_flash_attention_shrinks_compute_buffer_at_long_context(tiny_moe):
    m = inspect_file(tiny_moe)
    assert compute_buffer_bytes(m, 32768, 512, True) < compute_buffer_bytes(m, 32768, 512, False) / 4


def test_log_parser_reads_gpu_lines():
    text = ("load_tensors:        CUDA0 model buffer size =  1024.00 MiB\n"
            "load_tensors:   CPU_Mapped model buffer size =   512.50 MiB\n"
            "llama_kv_cache:      CUDA0 KV buffer size =   384.00 MiB\n"
            "sched_reserve:      CUDA0 compute buffer size =   300.75 MiB\n"
            "sched_reserve:  CUDA_Host compute buffer size =    20.01 MiB\n")
    log = parse_load_log(text)
    assert log.model == {"CUDA0": 1024 << 20, "CPU_Mapped": int(512.5 * 2**20)}
    assert log.kv == {"CUDA0": 384 << 20}
    assert log.compute["CUDA_Host"] == int(round(20.01 * 2**20))
