"""Measure what llama.cpp allocates (model / KV / compute buffers) on tiny proxies across contexts,
ubatch sizes, flash attention and KV types; write tuning/results/memory_calibration.json.

The sizing core's compute-buffer constants (moetui/sizing/memory.py) were fitted on this output.
Run:  python3 tuning/calibrate_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from moetui.model.proxy import write_proxy
from moetui.model.shapes import load_shape, scaled
from moetui.sizing.llama_log import parse_load_log

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "memory_calibration.json"

# Loads one model in a fresh process (llama.cpp logs to the process's stderr) and exits.
WORKER = r"""
import sys, llama_cpp
from llama_cpp import Llama
path, n_ctx, n_ub, fa, kv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "on", sys.argv[5]
kw = dict(model_path=path, n_ctx=n_ctx, n_batch=max(n_ub, 512), n_ubatch=n_ub, verbose=True, n_gpu_layers=0, flash_attn=fa)
if kv != "f16":
    t = {"q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0, "f32": llama_cpp.GGML_TYPE_F32}[kv]
    kw["type_k"] = t; kw["type_v"] = t
Llama(**kw)
"""

SHAPES = ["qwen3-30b-a3b", "gpt-oss-20b", "deepseek-v2-lite", "qwen3-0.6b", "mixtral-8x7b"]


def measure(path: Path, n_ctx: int, n_ubatch: int, fa: str, kv: str) -> dict:
    r = subprocess.run([sys.executable, "-c", WORKER, str(path), str(n_ctx), str(n_ubatch), fa, kv],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return {"error": r.stderr[-500:]}
    log = parse_load_log(r.stderr)
    return {"model": log.model, "kv": log.kv, "compute": log.compute, "output": log.output}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for shape in SHAPES[:2] if a.quick else SHAPES:
            path = Path(d) / f"{shape}.gguf"
            write_proxy(scaled(load_shape(shape), "tiny"), path, "Q4_K_M")
            grid = [(c, u, fa, "f16") for c in (512, 2048, 8192) for u in (128, 512) for fa in ("off", "on")]
            grid += [(4096, 512, "on", "q8_0"), (4096, 512, "on", "q4_0"), (4096, 512, "off", "f32")]
            for n_ctx, n_ub, fa, kv in grid:
                m = measure(path, n_ctx, n_ub, fa, kv)
                rows.append({"shape": shape, "n_ctx": n_ctx, "n_ubatch": n_ub, "flash_attn": fa, "cache_type": kv, **m})
                print(json.dumps(rows[-1]), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    from moetui.paths import atomic_write_json

    atomic_write_json(OUT, {"proxies": "tiny, Q4_K_M", "cpu_only": True, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
