"""Tensor buffer overrides through ctypes, checked against what llama.cpp itself logs, and the load-log
parser the sizing core calibrates against."""

from __future__ import annotations

from pathlib import Path

from moetui.config import RunConfig, TensorOverride
from moetui.runtime.client import ModelWorker
from moetui.runtime.stats import parse_load_log
from moetui.sizing.overrides import n_cpu_moe_overrides


def _load(tiny_moe: Path, overrides: list[TensorOverride]) -> tuple[str, object]:
    with ModelWorker() as w:
        info = w.start(RunConfig(model_path=str(tiny_moe), n_ctx=256, overrides=overrides))
        return w.log_path.read_text(errors="replace"), info


def test_override_lines_match_the_pattern(tiny_moe: Path) -> None:
    log, info = _load(tiny_moe, [TensorOverride(r"blk\.[23]\.ffn_(up|down|gate)_exps", "CPU")])
    moved = [ln for ln in log.splitlines() if "buffer type overridden to CPU" in ln]
    names = sorted(ln.split()[1] for ln in moved)
    assert names == sorted(f"blk.{i}.ffn_{p}_exps.weight" for i in (2, 3) for p in ("up", "down", "gate"))
    assert sorted(info.buffers.overridden) == names  # the parser saw the same lines
    assert info.buffers.experts_ram == 12 and info.buffers.experts_vram == 0  # CPU build: all in RAM


def test_n_cpu_moe_overrides_move_the_first_layers(tiny_moe: Path) -> None:
    _, info = _load(tiny_moe, n_cpu_moe_overrides(1))
    assert sorted(info.buffers.overridden) == sorted(f"blk.0.ffn_{p}_exps.weight" for p in ("up", "down", "gate"))


def test_no_overrides_no_override_lines(tiny_moe: Path) -> None:
    log, info = _load(tiny_moe, [])
    assert "overridden" not in log and info.buffers.overridden == {}
    assert info.buffers.model["CPU_Mapped"] > 4_000_000  # the ~5 MB file, mapped
    assert info.buffers.kv["CPU"] > 0 and info.buffers.compute["CPU"] > 0


def test_parse_load_log_groups_buffers_by_device() -> None:
    # lines in the exact format a CUDA build prints (this machine has no GPU to produce them)
    text = "\n".join([
        "load_tensors: layer   0 assigned to device CPU, is_swa = 0",
        "load_tensors: layer   1 assigned to device CUDA0, is_swa = 0",
        "create_tensor: loading tensor blk.0.ffn_up_exps.weight",
        "create_tensor: loading tensor blk.1.ffn_up_exps.weight",
        "create_tensor: loading tensor blk.1.ffn_down_exps.weight",
        "create_tensor: loading tensor blk.1.ffn_down_exps.scale",
        "tensor blk.1.ffn_down_exps.weight (12 MiB q4_K) buffer type overridden to CUDA_Host",
        "load_tensors:        CUDA0 model buffer size =  1000.00 MiB",
        "load_tensors:   CPU_Mapped model buffer size =   500.50 MiB",
        "load_tensors:    CUDA_Host model buffer size =    12.00 MiB",
        "llama_kv_cache:      CUDA0 KV buffer size =    64.00 MiB",
        "llama_kv_cache:      CUDA0 KV buffer size =    16.00 MiB",
        "sched_reserve:      CUDA0 compute buffer size =   300.00 MiB",
        "sched_reserve:  CUDA_Host compute buffer size =    20.00 MiB",
        "~llama_context:      CUDA0 compute buffer size is 300.0000 MiB, matches expectation of 300.0000 MiB",
    ])
    s = parse_load_log(text)
    mib = 1024 * 1024
    assert s.weights_by_device() == {"CUDA0": 1000 * mib, "CPU": int(512.5 * mib)}
    assert s.kv == {"CUDA0": 80 * mib}
    assert s.compute_by_device() == {"CUDA0": 300 * mib, "CPU": 20 * mib}
    assert (s.experts_ram, s.experts_vram) == (2, 1)  # layer 0 on CPU, layer-1 down overridden to host RAM
    assert s.experts_by_buffer == {"CPU": 1, "CUDA0": 1, "CUDA_Host": 1}
