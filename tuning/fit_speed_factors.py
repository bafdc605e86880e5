"""Fit the sizing core's decode-speed factors to every measured figure in tuning/reference.toml.

The reference set: published hybrid and CPU-only llama.cpp runs on other rigs and this project's own H100 /
H200 leases (tuning/results/gpu_bench.md, tuning/results/speed_vs_fit/prep.json). Each entry is predicted
with moetui.sizing.speed.predict for the entry's rig (GPU bandwidth, RAM bandwidth and whether a probe or
the spec gave it, physical cores, threads) and placement (-ngl 99 --n-cpu-moe N, or all on the CPU).

Fitted: gpu_bw, cpu_bw, cpu_thread_gbs, probe_of_theoretical, token_overhead_s, layer_overhead_s (hop
latency stays 30 us: with n-cpu-moe it moves with the layer count exactly like layer_overhead_s). Loss: mean
squared log error over the entries with in_fit (default true). Reports every entry's error before (the
factors this script replaced: no thread limit, a spec bandwidth taken as measured) and after, and the
leave-one-out error (refit without the entry, predict it). Writes tuning/results/speed_factors.{json,md}.

    PYTHONPATH=$PWD python3 tuning/fit_speed_factors.py        # ~1-2 minutes on 2 cores
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from moetui.hardware.rig import Rig  # noqa: E402
from moetui.model.info import ModelInfo  # noqa: E402
from moetui.sizing.placement import Assignment, hops_per_token, tensor_placement  # noqa: E402
from moetui.sizing.plan import PlanOptions, plan  # noqa: E402
from moetui.sizing.speed import EfficiencyFactors, predict  # noqa: E402
from moetui.model.virtual import model_info_for_shape  # noqa: E402

REFERENCE = HERE / "reference.toml"
# The factors before this fit's model of threads and spec bandwidth (moetui/sizing/speed.py until 2026-12-02).
BEFORE = EfficiencyFactors(gpu_bw=0.45, cpu_bw=0.4, token_overhead_s=1.3e-3, layer_overhead_s=8e-6,
                           cpu_thread_gbs=1e9, probe_of_theoretical=1.0)
FITTED = ("gpu_bw", "cpu_bw", "cpu_thread_gbs", "probe_of_theoretical", "token_overhead_s", "layer_overhead_s")
BOUNDS = {"gpu_bw": (0.2, 0.9), "cpu_bw": (0.2, 1.0), "cpu_thread_gbs": (1.0, 200.0),
          "probe_of_theoretical": (0.4, 1.0), "token_overhead_s": (1e-4, 5e-3), "layer_overhead_s": (0.0, 5e-5)}
# (VRAM cap GiB, context, measured prompt tok/s (pp2048, ubatch 512), where) -- the prompt model's check
GPU_PROMPT_POINTS = [(24, 8192, 11639, "cap24_ctx8192.json moetui-plan"),
                     (12, 8192, 2706, "cap12_ctx8192.rerun.json moetui-plan"),
                     (12, 32768, 2278, "cap12_ctx32768.json moetui-plan")]


def load_entries(path: Path = REFERENCE) -> list[dict[str, Any]]:
    return tomllib.loads(path.read_text())["entry"]


@lru_cache(maxsize=None)
def _model(shape: str, quant: str) -> ModelInfo:
    return model_info_for_shape(shape, quant)


@lru_cache(maxsize=None)
def _placement(shape: str, quant: str, n_cpu_moe: int, cpu_only: bool):
    model = _model(shape, quant)
    n = model.n_layers
    if cpu_only:
        a = Assignment([], ["CPU"] * n, {}, "CPU", 0)
        return tensor_placement(model, a), {"CPU": n}, 0
    a = Assignment(["CUDA0"], ["CUDA0"] * n, {il: {"up", "gate", "down"} for il in range(min(n_cpu_moe, n))},
                   "CUDA0", -1)
    return tensor_placement(model, a), {"CUDA0": n}, hops_per_token(model, a)


def predict_entry(e: dict[str, Any], eff: EfficiencyFactors, *, use_threads: bool = True) -> float:
    """Decode tok/s the sizing core predicts for one reference entry. use_threads=False predicts as the
    code before the thread model did (8 cores assumed, thread count ignored, spec bandwidth as measured)."""
    cpu_only = float(e["gpu_bw_gbs"]) <= 0
    placement, by_dev, hops = _placement(e["model_shape"], e["quant"], int(e["n_cpu_moe"]), cpu_only)
    bws = {"CPU": float(e["ram_bw_gbs"])}
    if not cpu_only:
        bws["CUDA0"] = float(e["gpu_bw_gbs"])
    if use_threads:
        cores, threads, theoretical = int(e.get("cpu_cores", 8)), e.get("threads"), e.get("ram_bw_kind") == "theoretical"
    else:
        cores, threads, theoretical = 8, None, False
    sp = predict(_model(e["model_shape"], e["quant"]), placement, by_dev, bws, cores, hops,
                 float(e["pcie_gbs"]) or None, 512, eff, n_threads=threads, ram_bw_theoretical=theoretical)
    return sp.decode_tps


def loss(entries: list[dict[str, Any]], eff: EfficiencyFactors) -> float:
    errs = [math.log(predict_entry(e, eff) / float(e["decode_tps"])) for e in entries]
    return sum(x * x for x in errs) / max(len(errs), 1)


def fit(entries: list[dict[str, Any]], start: EfficiencyFactors | None = None, rounds: int = 60,
        restarts: int = 3) -> EfficiencyFactors:
    """Coordinate descent on the fitted factors, multiplicative steps that shrink when nothing improves,
    restarted with a large step while a restart still improves (the factors trade off against each other)."""
    eff = start or EfficiencyFactors()
    for _ in range(restarts):
        before = loss(entries, eff)
        eff = _descend(entries, eff, rounds)
        if loss(entries, eff) > before - 1e-9:
            break
    return eff


def _descend(entries: list[dict[str, Any]], eff: EfficiencyFactors, rounds: int) -> EfficiencyFactors:
    best = loss(entries, eff)
    step = 0.25
    for _ in range(rounds):
        improved = False
        for name in FITTED:
            lo, hi = BOUNDS[name]
            cur = getattr(eff, name)
            for cand in (cur * (1 + step), cur / (1 + step), cur + (1e-6 if name == "layer_overhead_s" else 0)):
                cand = min(max(cand, lo), hi)
                if cand == cur:
                    continue
                trial = replace(eff, **{name: cand})
                val = loss(entries, trial)
                if val < best - 1e-12:
                    eff, best, cur, improved = trial, val, cand, True
        if not improved:
            step /= 2
            if step < 0.005:
                break
    return eff


def rounded(eff: EfficiencyFactors) -> dict[str, float]:
    return {k: float(f"{getattr(eff, k):.3g}") for k in FITTED}


def h100_rig(cap_gib: float) -> Rig:
    d = json.loads((HERE / "results/gpu/prep_bandwidth_h100.json").read_text())["rig"]
    rig = Rig.from_dict(d)
    rig.gpus[0].vram_free_bytes = rig.gpus[0].vram_total_bytes = int(cap_gib * 2**30)
    return rig


def main() -> None:
    entries = load_entries()
    fitted_set = [e for e in entries if e.get("in_fit", True)]
    eff = fit(fitted_set, start=EfficiencyFactors(), rounds=200, restarts=6)
    eff = replace(eff, **rounded(eff), source="fitted: tuning/fit_speed_factors.py on tuning/reference.toml")
    rows = []
    for e in entries:
        loo = None
        if e.get("in_fit", True):
            rest = [x for x in fitted_set if x["name"] != e["name"]]
            loo = predict_entry(e, fit(rest, start=eff, rounds=15, restarts=1)) / float(e["decode_tps"]) - 1
        before = predict_entry(e, BEFORE, use_threads=False)
        after = predict_entry(e, eff)
        rows.append({"name": e["name"], "measured": float(e["decode_tps"]), "n_cpu_moe": int(e["n_cpu_moe"]),
                     "threads": e.get("threads"), "in_fit": e.get("in_fit", True),
                     "predicted_before": before, "error_before": before / float(e["decode_tps"]) - 1,
                     "predicted_after": after, "error_after": after / float(e["decode_tps"]) - 1,
                     "error_leave_one_out": loo, "source": e["source"]})
        print(f"{e['name']:48s} {e['decode_tps']:7.1f} before {rows[-1]['error_before']:+6.1%} "
              f"after {rows[-1]['error_after']:+6.1%}" + (f" loo {loo:+6.1%}" if loo is not None else ""), flush=True)
    fit_rows = [r for r in rows if r["in_fit"]]
    summary = {k: max(abs(float(r[k])) for r in fit_rows) for k in ("error_before", "error_after", "error_leave_one_out")}
    median = {k: sorted(abs(float(r[k])) for r in fit_rows)[len(fit_rows) // 2] for k in summary}
    (HERE / "results/speed_factors.json").write_text(json.dumps(
        {"fitted": rounded(eff), "before": rounded(BEFORE), "worst_abs_error": summary, "median_abs_error": median,
         "entries": rows}, indent=1) + "\n")
    f = rounded(eff)
    md = ["# Decode-speed factors fitted to measured figures", "",
          f"{len(fit_rows)} entries of tuning/reference.toml fitted ({len(rows) - len(fit_rows)} reported only, "
          "their notes say why): published runs on other rigs and this project's H100/H200 leases.", "",
          "Fitted: " + ", ".join(f"{k} {v:g}" for k, v in f.items()) + ". Defaults in moetui/sizing/speed.py: "
          + ", ".join(f"{k} {v:g}" for k, v in rounded(EfficiencyFactors()).items()) + ".", "",
          "Model: CPU-resident weights stream at cpu_bw x 1/(1/RAM + 1/(threads x cpu_thread_gbs)), threads capped at "
          "the physical cores, RAM = the probe's read bandwidth, or probe_of_theoretical x the spec where only the "
          "DDR type and channels are known; GPU weights at gpu_bw x the spec bandwidth; plus per-token, per-layer "
          "and per-crossing fixed costs.", "",
          f"Worst |error| over the fitted entries: before {summary['error_before']:.0%}, after {summary['error_after']:.0%}, "
          f"leave-one-out {summary['error_leave_one_out']:.0%}; median: before {median['error_before']:.0%}, after "
          f"{median['error_after']:.0%}, leave-one-out {median['error_leave_one_out']:.0%}.", "",
          "'Before' is the previous defaults (gpu_bw 0.45, cpu_bw 0.4, 1.3 ms/token, 8 us/layer, no thread limit, "
          "8 cores, a spec bandwidth taken as measured). Error = predicted / measured - 1.", "",
          "| entry | experts in RAM (layers) | threads | measured tok/s | before | after | leave-one-out | source |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loo = f"{r['error_leave_one_out']:+.0%}" if r["error_leave_one_out"] is not None else "(not fitted)"
        md.append(f"| {r['name']} | {r['n_cpu_moe']} | {r['threads'] or 'default'} | {r['measured']:g} | "
                  f"{r['predicted_before']:.1f} ({r['error_before']:+.0%}) | {r['predicted_after']:.1f} ({r['error_after']:+.0%}) | "
                  f"{loo} | {r['source']} |")
    info = _model("qwen3-30b-a3b", "Q4_K_M")
    md += ["", f"Prompt speed with the default gpu_flops_per_bw_byte {EfficiencyFactors().gpu_flops_per_bw_byte}:", "",
           "| point | measured pp2048 (ub 512) | predicted | error | source |", "|---|---|---|---|---|"]
    for gib, ctx, measured, where in GPU_PROMPT_POINTS:
        p = plan(info, h100_rig(gib), PlanOptions(n_ctx=ctx, vram_margin_bytes=1 << 30, flash_attn="on"))
        md.append(f"| H100 cap {gib} GiB ctx {ctx} | {measured} | {p.prompt_tps:.0f} | {p.prompt_tps / measured - 1:+.1%} | {where} |")
    md += ["", "Rerun: `PYTHONPATH=$PWD python3 tuning/fit_speed_factors.py` (1-2 minutes)."]
    (HERE / "results/speed_factors.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
