"""Predicted vs measured tok/s.

1. This machine: a small (~1 GB; `--scale tiny` for a quick look) Qwen3-30B-A3B-shaped proxy run by
   llama-cpp-python on the CPU (decode of 64 tokens, prompt of 256), next to what moetui.sizing predicts
   for the detected rig. A 5 MB tiny proxy measures Python overhead, not memory bandwidth.
2. tuning/reference.toml: published measurements (rig, model, flags, tok/s, source), each predicted
   with the same placement (-ngl 99, --n-cpu-moe N) on a rig built from the entry.
Writes tuning/results/predict_vs_measured.json and .md.   Run: python3 tuning/predict_vs_measured.py
The H100 points (capped VRAM, full-scale proxy) are fitted and reported by tuning/fit_speed_factors.py.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from moetui.hardware.rig import CPUInfo, GPUInfo, LlamaBuildInfo, MemoryInfo, Rig
from moetui.model.inspect import inspect_file
from moetui.model.proxy import write_proxy
from moetui.model.shapes import load_shape, scaled
from moetui.paths import atomic_write_json, atomic_write_text
from moetui.sizing.plan import PlanOptions, plan
from moetui.sizing.speed import EfficiencyFactors

HERE = Path(__file__).resolve().parent


def measure_local(path: Path, n_threads: int, n_gen: int = 64, n_prompt: int = 256, reps: int = 3) -> dict:
    from llama_cpp import Llama

    from moetui.hardware.repack import make_llama_cpp_safe

    make_llama_cpp_safe()  # --no-repack where this CPU's AMX kernels crash, as the plan says
    llm = Llama(model_path=str(path), n_ctx=2048, n_batch=512, n_ubatch=512, n_gpu_layers=0, verbose=False, seed=1,
                n_threads=n_threads, n_threads_batch=n_threads)
    toks = [(i % 1000) + 10 for i in range(n_prompt)]
    pp, tg = [], []
    for _ in range(reps):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(toks)
        pp.append(n_prompt / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(n_gen):
            tok = llm.sample(temp=0.0)
            llm.eval([tok])
        tg.append(n_gen / (time.perf_counter() - t0))
    return {"decode_tps": statistics.median(tg), "prompt_tps": statistics.median(pp),
            "decode_runs": tg, "prompt_runs": pp}


def plan_after_a_tune(path: Path, data: Path) -> dict:
    """What `moetui plan` predicts once one short tune has measured this rig's efficiency factors (the
    tuner saves them per rig; later plans start from them): the defaults are only a starting point."""
    import os
    import subprocess

    env = {**os.environ, "MOETUI_DATA_DIR": str(data)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "moetui", *a], capture_output=True, text=True,  # noqa: E731
                                    check=True, env=env).stdout
    run("tune", str(path), "--json", "--budget", "120", "--dimensions", "flash_attn", "--max-probes", "1",
        "-p", "256", "-n", "64", "-r", "3", "--ctx", "2048")
    after = json.loads(run("plan", str(path), "--json", "--ctx", "2048"))
    return {"decode_tps": after["decode_tps"], "prompt_tps": after["prompt_tps"],
            "efficiency_source": after["efficiency"]["source"]}


def predict_reference(e: dict) -> float:
    """The entry's rig (cores, threads, probe or spec RAM bandwidth) and placement, as the fit sees it."""
    from fit_speed_factors import predict_entry

    return predict_entry(e, EfficiencyFactors())


def main() -> int:
    import argparse

    from moetui.hardware import load_rig

    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=("tiny", "small"), default="small")
    scale = ap.parse_args().scale
    out: dict = {"local": {}, "reference": []}
    rig = load_rig("auto")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{scale}.gguf"
        write_proxy(scaled(load_shape("qwen3-30b-a3b"), scale), path, "Q4_K_M")
        model = inspect_file(path)
        p = plan(model, rig, PlanOptions(n_ctx=2048))
        meas = measure_local(path, p.config.n_threads or rig.cpu.physical_cores)
        path_size = path.stat().st_size
        tuned = plan_after_a_tune(path, Path(d) / "data")
    out["local"] = {
        "rig": rig.name, "cpu": rig.cpu.model, "physical_cores": rig.cpu.physical_cores,
        "ram_bandwidth_gbs": rig.ram_bandwidth_gbs, "model": f"qwen3-30b-a3b {scale} proxy Q4_K_M ({path_size / 1e6:,.0f} MB)",
        "repack": p.config.repack, "threads": p.config.n_threads,
        "predicted_decode_tps": p.decode_tps, "measured_decode_tps": meas["decode_tps"],
        "decode_error": p.decode_tps / meas["decode_tps"] - 1,
        "predicted_prompt_tps": p.prompt_tps, "measured_prompt_tps": meas["prompt_tps"],
        "prompt_error": p.prompt_tps / meas["prompt_tps"] - 1, "runs": meas,
        "after_tune": {**tuned, "decode_error": tuned["decode_tps"] / meas["decode_tps"] - 1,
                       "prompt_error": tuned["prompt_tps"] / meas["prompt_tps"] - 1},
    }
    ref = tomllib.loads((HERE / "reference.toml").read_text())
    for e in ref.get("entry", []):
        pred = predict_reference(e)
        out["reference"].append({"name": e["name"], "measured_decode_tps": e["decode_tps"], "predicted_decode_tps": pred,
                                 "error": pred / e["decode_tps"] - 1, "flags": e["flags"], "source": e["source"]})
    res = HERE / "results"
    atomic_write_json(res / "predict_vs_measured.json", out)
    L = out["local"]
    lines = ["# Predicted vs measured tok/s", "", "Default EfficiencyFactors (moetui/sizing/speed.py). Error = predicted/measured - 1.", "",
             f"## This machine ({L['cpu']}, {L['physical_cores']} cores, RAM bw {L['ram_bandwidth_gbs']} GB/s), {L['model']}", "",
             f"{L['threads']} threads, repacking {'on' if L['repack'] else 'off (--no-repack: this CPU AMX-traps)'}.", "",
             "| | predicted | measured (median of 3) | error |", "|---|---|---|---|",
             f"| decode tok/s | {L['predicted_decode_tps']:.1f} | {L['measured_decode_tps']:.1f} | {L['decode_error']:+.0%} |",
             f"| prompt tok/s | {L['predicted_prompt_tps']:.1f} | {L['measured_prompt_tps']:.1f} | {L['prompt_error']:+.0%} |",
             f"| decode tok/s, after one tune on this rig | {L['after_tune']['decode_tps']:.1f} | {L['measured_decode_tps']:.1f} | {L['after_tune']['decode_error']:+.0%} |",
             f"| prompt tok/s, after one tune on this rig | {L['after_tune']['prompt_tps']:.1f} | {L['measured_prompt_tps']:.1f} | {L['after_tune']['prompt_error']:+.0%} |",
             "",
             "'After one tune': `moetui tune` (one probe, pp256/tg64) saved this rig's efficiency factors; `moetui plan` "
             "then predicted again (the tuner's factors replace the defaults on the rig where they were measured).", "",
             "## Published measurements (tuning/reference.toml)", "", "| entry | flags | measured | predicted | error | source |",
             "|---|---|---|---|---|---|"]
    for r in out["reference"]:
        lines.append(f"| {r['name']} | {r['flags']} | {r['measured_decode_tps']:.1f} | {r['predicted_decode_tps']:.1f} | "
                     f"{r['error']:+.0%} | {r['source']} |")
    atomic_write_text(res / "predict_vs_measured.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
