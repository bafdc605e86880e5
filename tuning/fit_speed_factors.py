"""Fit the sizing core's decode-speed efficiency factors to measured figures, side by side.

Measured points: three decode speeds on an H100 with capped VRAM (tuning/results/gpu_bench.md: all on the
GPU at 24 GiB; 23 expert layers in RAM at 12 GiB / 8K; 30 layers at 12 GiB / 32K, both at 16 threads) and
the three published figures in tuning/reference.toml. Prints, for a small grid of (gpu_bw, cpu_bw,
token_overhead_s), each point's prediction error, and writes tuning/results/speed_factors.{json,md}.

    python3 tuning/fit_speed_factors.py        # ~1 minute
"""

from __future__ import annotations

import itertools
import json
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from moetui.hardware.rig import Rig  # noqa: E402
from moetui.sizing.plan import PlanOptions, plan  # noqa: E402
from moetui.sizing.speed import EfficiencyFactors  # noqa: E402
from moetui.model.virtual import model_info_for_shape  # noqa: E402

import predict_vs_measured as pvm  # noqa: E402

# (VRAM cap GiB, context, measured decode tok/s, where)
GPU_POINTS = [(24, 8192, 298.5, "cap24_ctx8192.json moetui-plan"),
              (12, 8192, 64.7, "cap12_ctx8192.rerun.json moetui-plan (16 threads)"),
              (12, 32768, 45.1, "cap12_ctx32768.json grid-ncmoe30 (16 threads, = the plan's placement)")]
# (VRAM cap GiB, context, measured prompt tok/s (pp2048, ubatch 512), where)
GPU_PROMPT_POINTS = [(24, 8192, 11639, "cap24_ctx8192.json moetui-plan"),
                     (12, 8192, 2706, "cap12_ctx8192.rerun.json moetui-plan"),
                     (12, 32768, 2278, "cap12_ctx32768.json moetui-plan")]
GRID = {"gpu_bw": [0.4, 0.45, 0.5], "cpu_bw": [0.35, 0.4, 0.5], "token_overhead_s": [1.0e-3, 1.3e-3]}


def h100_rig(cap_gib: float) -> Rig:
    d = json.loads((HERE / "results/gpu/prep_bandwidth_h100.json").read_text())["rig"]
    rig = Rig.from_dict(d)
    rig.gpus[0].vram_free_bytes = rig.gpus[0].vram_total_bytes = int(cap_gib * 2**30)
    return rig


def errors(eff: EfficiencyFactors) -> list[dict[str, object]]:
    info = model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")
    out = []
    for gib, ctx, measured, where in GPU_POINTS:
        p = plan(info, h100_rig(gib), PlanOptions(n_ctx=ctx, vram_margin_bytes=1 << 30, flash_attn="on", efficiency=eff))
        out.append({"point": f"H100 cap {gib} GiB ctx {ctx}", "measured": measured, "predicted": p.decode_tps,
                    "error": p.decode_tps / measured - 1, "source": where})
    pvm.EfficiencyFactors = lambda: eff  # predict_reference builds its factors itself
    for e in tomllib.loads((HERE / "reference.toml").read_text())["entry"]:
        pred = pvm.predict_reference(e)
        out.append({"point": e["name"], "measured": e["decode_tps"], "predicted": pred,
                    "error": pred / e["decode_tps"] - 1, "source": e["source"]})
    return out


def main() -> None:
    rows = []
    for gbw, cbw, tok in itertools.product(*GRID.values()):
        eff = EfficiencyFactors(gpu_bw=gbw, cpu_bw=cbw, token_overhead_s=tok)
        errs = errors(eff)
        worst = max(abs(float(e["error"])) for e in errs)
        rows.append({"gpu_bw": gbw, "cpu_bw": cbw, "token_overhead_s": tok, "worst": worst, "points": errs})
        print(f"gpu_bw {gbw} cpu_bw {cbw} token {tok * 1e3:.1f} ms: worst {worst:.1%}  "
              + " ".join(f"{float(e['error']):+.0%}" for e in errs), flush=True)
    best = min(rows, key=lambda r: r["worst"])
    default = EfficiencyFactors()
    current = errors(default)
    (HERE / "results/speed_factors.json").write_text(json.dumps({"grid": rows, "best": best, "defaults": {
        "factors": default.to_dict(), "points": current}}, indent=1))
    md = ["# Decode-speed efficiency factors fitted to measurements", "",
          f"Best of the grid: gpu_bw {best['gpu_bw']}, cpu_bw {best['cpu_bw']}, token overhead "
          f"{best['token_overhead_s'] * 1e3:.1f} ms: worst error {best['worst']:.1%}. "
          f"Current defaults (moetui/sizing/speed.py): gpu_bw {default.gpu_bw}, cpu_bw {default.cpu_bw}, "
          f"token overhead {default.token_overhead_s * 1e3:.1f} ms.", "",
          "| point | measured tok/s | predicted (defaults) | error | source |", "|---|---|---|---|---|"]
    md += [f"| {e['point']} | {e['measured']} | {float(e['predicted']):.1f} | {float(e['error']):+.1%} | {e['source']} |"
           for e in current]
    info = model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")
    md += ["", f"Prompt speed with the default gpu_flops_per_bw_byte {default.gpu_flops_per_bw_byte}:", "",
           "| point | measured pp2048 (ub 512) | predicted | error | source |", "|---|---|---|---|---|"]
    for gib, ctx, measured, where in GPU_PROMPT_POINTS:
        p = plan(info, h100_rig(gib), PlanOptions(n_ctx=ctx, vram_margin_bytes=1 << 30, flash_attn="on"))
        md.append(f"| H100 cap {gib} GiB ctx {ctx} | {measured} | {p.prompt_tps:.0f} | {p.prompt_tps / measured - 1:+.1%} | {where} |")
    md += ["", "Rerun: `python3 tuning/fit_speed_factors.py` (about a minute)."]
    (HERE / "results/speed_factors.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
