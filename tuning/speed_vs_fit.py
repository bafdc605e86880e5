"""moetui against llama.cpp's own fit, measured by llama.cpp's own llama-bench from the lines moetui exports.

Runs on the lent GPU (one NVIDIA GPU whose usable VRAM is capped by a process holding the rest, see
tuning/gpu/vram_hold.py), in stages that each fit one 10-minute call:

    source tuning/gpu/setup.sh
    python3 tuning/speed_vs_fit.py prep --out $OUT      # proxy, bandwidths, llama-fit-params per cap, memory calibration
    python3 tuning/speed_vs_fit.py cell --gib 12 --ctx 8192 --out $OUT   # fit / --cpu-moe / plan / tuned / grid
    python3 tuning/speed_vs_fit.py report DIR > tuning/results/speed_vs_fit.md   # here: merges, writes the JSON

Every speed figure comes from llama-bench (one CUDA build, 5 repetitions, configs interleaved: A B C ... A B
C ...), prompt and decode at the workload's sizes; memory from NVML with the full context allocated.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tuning"))

from gpu_bench import GiB, MARGIN_MIB, MODEL, VramCap, gpu_free_bytes, gpu_process_memory, log, measure_bandwidths  # noqa: E402

from moetui.config import RunConfig  # noqa: E402
from moetui.sizing.overrides import n_cpu_moe_overrides  # noqa: E402

BIN = Path(os.environ.get("MOETUI_GPU_BIN", "/tmp/lcpp/build/bin"))
CAPS = (8, 12, 24)
CTXS = (8192, 32768)


def fit_params(n_ctx: int, kv: str = "f16") -> dict[str, Any]:
    """llama.cpp's own placement at the same margin as moetui's plan (kv: the cache type it fits for)."""
    t0 = time.perf_counter()
    cmd = [str(BIN / "llama-fit-params"), "-m", str(MODEL), "-c", str(n_ctx), "-fa", "on", "-fitt", str(MARGIN_MIB)]
    if kv != "f16":
        cmd += ["-ctk", kv, "-ctv", kv]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except OSError as exc:
        return {"cmd": shlex.join(cmd), "rc": -1, "line": "", "seconds": 0.0, "stderr_tail": str(exc)}
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    return {"cmd": shlex.join(cmd), "rc": r.returncode, "line": line, "seconds": time.perf_counter() - t0,
            "stderr_tail": r.stderr[-1500:]}


def llama_bench(args: list[str], timeout: float = 400) -> list[dict[str, Any]]:
    cmd = [str(BIN / "llama-bench"), "-m", str(MODEL), "-o", "json", *args]
    log("llama-bench", shlex.join(cmd[3:]))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        return [{"error": f"rc {r.returncode}: {r.stderr[-800:]}", "args": args}]
    rows = json.loads(r.stdout or "[]")
    for row in rows:
        row["args"] = args
        log(f"  n_prompt {row.get('n_prompt')} n_gen {row.get('n_gen')} ub {row.get('n_ubatch')} "
            f"lm {row.get('load_mode', row.get('use_mmap'))}: {row.get('avg_ts', 0):.1f} ± {row.get('stddev_ts', 0):.1f} tok/s")
    return rows


def calibrate_memory(n_ctx: int, n_cpu_moe: int, ubatches: list[int]) -> list[dict[str, Any]]:
    """llama.cpp's logged buffers and NVML's process memory at each ubatch, full context allocated."""
    from moetui.runtime.client import ModelWorker

    rows: list[dict[str, Any]] = []
    cfg = RunConfig(str(MODEL), n_ctx=n_ctx, overrides=n_cpu_moe_overrides(n_cpu_moe), flash_attn="on",
                    load_mode="none", repack=False, n_batch=max(ubatches), n_ubatch=ubatches[0])
    try:
        with ModelWorker() as w:
            t0 = time.perf_counter()
            info = w.start(cfg)
            load_s = time.perf_counter() - t0
            for i, ub in enumerate(ubatches):
                buffers = info.buffers if i == 0 else w.reconfigure(n_ubatch=ub, n_batch=max(ubatches))
                row = {"n_ctx": n_ctx, "n_cpu_moe": n_cpu_moe, "n_ubatch": ub, "load_s": load_s,
                       "buffers": buffers.to_dict(), "nvml_process_bytes": gpu_process_memory(info.pid)}
                # CUDA's memory pool grows on the first big batch (scratch beside the compute buffer) and never
                # shrinks: what a running chat holds is what NVML reads after one full ubatch
                w.bench(n_prompt=ub, n_gen=4, reps=1)
                row["nvml_after_compute_bytes"] = gpu_process_memory(info.pid)
                log(f"calib ctx {n_ctx} ncmoe {n_cpu_moe} ub {ub}: NVML {(row['nvml_process_bytes'] or 0) / GiB:.3f} GiB, "
                    f"after a {ub}-token batch {(row['nvml_after_compute_bytes'] or 0) / GiB:.3f} GiB, compute {buffers.compute}")
                rows.append(row)
    except Exception as exc:  # a failed load is a result too
        rows.append({"n_ctx": n_ctx, "n_cpu_moe": n_cpu_moe, "error": f"{type(exc).__name__}: {exc}"[:800]})
    return rows


def stage_prep(args: argparse.Namespace) -> dict[str, Any]:
    from moetui.hardware import detect_rig
    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape

    out: dict[str, Any] = {"stage": "prep"}
    path = args.out / "prep.json"

    def save() -> None:
        path.write_text(json.dumps(out, indent=1, default=str))

    MODEL.parent.mkdir(parents=True, exist_ok=True)
    if not MODEL.exists():
        r = write_proxy(load_shape("qwen3-30b-a3b"), MODEL, "Q4_K_M")
        out["proxy_write_s"] = r.seconds
        log(f"proxy {r.bytes_written / 1e9:.2f} GB in {r.seconds:.1f} s")
    out["bandwidth"] = measure_bandwidths()
    log("bandwidth", out["bandwidth"])
    out["rig_uncapped"] = detect_rig().to_dict()
    save()
    out["caps"] = {}
    for gib in args.caps:
        with VramCap(gib):
            cell: dict[str, Any] = {"gpu_free_bytes": gpu_free_bytes(), "rig": detect_rig().to_dict(), "fit": {}}
            for ctx in args.ctxs:
                cell["fit"][str(ctx)] = f = fit_params(ctx)
                log(f"cap {gib} ctx {ctx}: fit {f['line'][:200]} ({f['seconds']:.1f} s)")
            if gib == args.bench_cap:
                bench_fit = fit_bench_args(cell["fit"][str(args.ctxs[0])]["line"])
                common = ["-fa", "on", "-p", "2048", "-n", "128", "-r", "3"]
                cell["bench"] = (
                    llama_bench([*bench_fit, *common, "-lm", "none", "--repack", "0,1", "-ub", "2048", "-b", "2048"])
                    + llama_bench([*bench_fit, *common, "-lm", "none", "--repack", "0", "-ub", "1024,4096", "-b", "4096"])
                    + llama_bench(["-ngl", "999", "-ncmoe", str(fit_cpu_layers(cell["fit"][str(args.ctxs[0])]["line"])),
                                   *common, "-lm", "none", "--repack", "0", "-ub", "2048", "-b", "2048"])
                )
            out["caps"][str(gib)] = cell
            save()
    out["memory"] = []
    for ctx in args.ctxs:
        out["memory"] += calibrate_memory(ctx, args.calib_ncmoe, [512, 2048, 4096])
        save()
    return out


def _fit_overrides(line: str) -> tuple[str, list[str]]:
    """(-ngl value, override entries) of a llama-fit-params line: `-c N -ngl M -ot "p1=CPU,p2=CPU"`."""
    argv = shlex.split(line)
    ngl = argv[argv.index("-ngl") + 1] if "-ngl" in argv else "999"
    ots: list[str] = []
    for i, a in enumerate(argv):
        if a in ("-ot", "--override-tensor") and i + 1 < len(argv):
            ots += [x for x in argv[i + 1].split(",") if x]
    return ngl, ots


def fit_bench_args(line: str) -> list[str]:
    """llama-fit-params' placement as llama-bench flags: several overrides are joined by ';' there."""
    ngl, ots = _fit_overrides(line)
    return ["-ngl", ngl, *(["-ot", ";".join(ots)] if ots else [])]


def fit_cpu_layers(line: str) -> int:
    """How many layers' experts llama.cpp's fit put in RAM (its patterns name the layers)."""
    import re

    layers: set[int] = set()
    for o in _fit_overrides(line)[1]:
        for m in re.finditer(r"blk\\?\.(\d+)", o):
            layers.add(int(m.group(1)))
    return len(layers)


# ---- one cell: a VRAM cap and a context -------------------------------------------------------------
def bench_argv(cfg: RunConfig) -> list[str]:
    """The llama-bench line moetui exports for a config, without the model and the test sizes (the cell
    sets those the same for every variant)."""
    from moetui.export.commandline import export_command

    argv = export_command(cfg, "bench", binary=str(BIN / "llama-bench")).argv[1:]
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in ("-m", "-p", "-n", "-o", "-r"):
            skip = True
            continue
        out.append(a)
    return out


def workloads_for(ctx: int) -> list[str]:
    """The workloads planned for a context: long-prompt (a 16K prompt) only where the context holds it; chat
    and decode always (at 8K the chat workload's 8K depth is clipped to what the context holds)."""
    from moetui.sizing.workload import WORKLOADS

    return [w for w, wl in WORKLOADS.items() if w != "long-prompt" or wl.context_needed <= ctx]


def prove_memory(cfg: RunConfig) -> dict[str, Any]:
    """Load a config with its full context allocated: NVML's process memory, to set beside the plan's."""
    from moetui.runtime.client import ModelWorker

    try:
        with ModelWorker() as w:
            info = w.start(cfg)
            loaded = gpu_process_memory(info.pid)
            w.bench(n_prompt=max(cfg.n_ubatch or 512, 2048), n_gen=8, reps=1)  # a prompt as big as the bench's
            return {"nvml_process_bytes": loaded, "nvml_after_compute_bytes": gpu_process_memory(info.pid),
                    "buffers": info.buffers.to_dict(), "load_s": info.load_s}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:600]}


def run_tune(rig: Any, ctx: int, budget: float, workload: str) -> dict[str, Any]:
    """moetui's tuner within its budget, from scratch; its winner is measured below by llama-bench like every
    other variant, so no figure rests on the tuner's own measurements."""
    from moetui.tuner import ProfileStore, TuneOptions
    from moetui.tuner.engine import Tuner

    t0 = time.perf_counter()
    probes: list[str] = []

    def on_event(ev: Any) -> None:
        probe = getattr(ev, "probe", None)
        if type(ev).__name__ == "ProbeFinished" and probe is not None:
            why = f" ({probe.error_kind}: {probe.error})" if getattr(probe, "error", None) else ""
            vram = f", VRAM {probe.vram_bytes / GiB:.3f} GiB" if getattr(probe, "vram_bytes", None) else ""
            probes.append(f"{probe.label}: {probe.status}{why}{vram}")
            log("tuner", probes[-1])
        elif type(ev).__name__ == "ProbesCompared":
            log("tuner", "compared: " + ev.decision.describe())

    opts = tune_options(TuneOptions, budget, ctx, workload)
    store = ProfileStore(Path(f"/tmp/moetui-data/profiles-{time.time_ns()}"))
    result = Tuner(str(MODEL), rig, opts, store=store).run(on_event)
    best = result.best
    bench = getattr(best, "bench", None)
    return {"config": best.config.to_dict() if best else None, "seconds": time.perf_counter() - t0,
            "tuner_measured": {"pp": getattr(bench, "pp_median", None), "tg": getattr(bench, "tg_median", None)},
            "stopped": result.stopped, "probes": probes, "label": best.label if best else None,
            "decisions": [d.describe() for d in getattr(result, "decisions", None) or []],
            "predicted": getattr(result, "predicted", None), "efficiency": getattr(result, "efficiency", None),
            "objective_score": getattr(best, "score", None), "turn_s": getattr(best, "turn_s", None)}


def tune_options(cls: Any, budget: float, ctx: int, workload: str) -> Any:
    """TuneOptions for this run: the user's settings (context, margin, workload) in its Settings."""
    from moetui.sizing.settings import Settings
    from moetui.sizing.workload import parse_workload

    settings = Settings(n_ctx=ctx, vram_margin_bytes=MARGIN_MIB << 20, workload=parse_workload(workload))
    return cls(settings, budget_s=budget, retune=True)


def stage_cell(args: argparse.Namespace) -> dict[str, Any]:
    from moetui.hardware import detect_rig
    from moetui.model.inspect import inspect_file
    from moetui.sizing.plan import PlanOptions, plan
    from moetui.sizing.workload import WORKLOADS

    info = inspect_file(MODEL)
    out: dict[str, Any] = {"stage": "cell", "cap_gib": args.gib, "ctx": args.ctx, "margin_mib": MARGIN_MIB,
                           "variants": {}, "runs": []}
    path = args.out / f"cell{args.gib:g}_ctx{args.ctx}.json"

    def save() -> None:
        path.write_text(json.dumps(out, indent=1, default=str))

    t_cell = time.perf_counter()
    with VramCap(args.gib) if not args.no_cap else _NoCap():
        rig = detect_rig()
        out["gpu_free_bytes"] = rig.gpus[0].vram_free_bytes if rig.gpus else None
        variants: dict[str, list[str]] = {}
        fit = fit_params(args.ctx)
        out["fit"] = fit
        if fit["rc"] == 0 and fit["line"].startswith("-c"):
            variants["llama-fit (llama.cpp defaults)"] = fit_bench_args(fit["line"])
        if args.cpu_moe:
            variants["--cpu-moe (llama.cpp defaults)"] = ["-ngl", "999", "-ncmoe", "999"]
        plans: dict[str, Any] = {}
        for w in [w for w in workloads_for(args.ctx) if not args.plan_workloads or w in args.plan_workloads]:
            p = plan(info, rig, PlanOptions(n_ctx=args.ctx, vram_margin_bytes=MARGIN_MIB << 20, workload=WORKLOADS[w],
                                            model_path=str(MODEL)))
            plans[w] = p
            out.setdefault("plans", {})[w] = {
                "config": p.config.to_dict(), "prompt_tps": p.prompt_tps, "decode_tps": p.decode_tps,
                "turn_seconds": p.turn_seconds, "n_cpu_moe": p.n_cpu_moe, "explanation": p.explanation,
                "memory": {d: {"weights": m.weights, "kv": m.kv, "compute": m.compute, "overhead": m.overhead,
                               "total": m.total} for d, m in p.memory.items()}}
            argv = bench_argv(p.config)
            same = next((k for k, v in variants.items() if k.startswith("moetui plan") and v == argv), None)
            if same:
                variants[same[:-1] + f", {w})"] = variants.pop(same)
            else:
                variants[f"moetui plan ({w})"] = argv
        save()
        if args.prove_memory:
            out["memory_proof"] = prove_memory(plans[next(iter(plans))].config)
            log("memory proof", {k: v for k, v in out["memory_proof"].items() if k != "buffers"})
            save()
        if args.tune_budget > 0:
            out["tune"] = run_tune(rig, args.ctx, args.tune_budget, args.tune_workload)
            if out["tune"]["config"]:
                variants["moetui tuned"] = bench_argv(RunConfig.from_dict(out["tune"]["config"]))
            save()
            for k in range(2, args.tunes + 1):  # from scratch again (a fresh profile store): do two tunes agree?
                again = run_tune(rig, args.ctx, args.tune_budget, args.tune_workload)
                out.setdefault("tunes_again", []).append(again)
                if again["config"]:
                    argv = bench_argv(RunConfig.from_dict(again["config"]))
                    same = next((n for n, v in variants.items() if n.startswith("moetui tuned") and v == argv), None)
                    if same:
                        again["same_as"] = same
                    else:
                        variants[f"moetui tuned (tune {k})"] = argv
                save()
            eff = out["tune"].get("efficiency")
            if eff:  # what the plan predicts once one tune has refit the speed factors for this rig
                from moetui.sizing.speed import EfficiencyFactors

                w = args.tune_workload
                p = plan(info, rig, PlanOptions(n_ctx=args.ctx, vram_margin_bytes=MARGIN_MIB << 20, workload=WORKLOADS[w],
                                                model_path=str(MODEL), efficiency=EfficiencyFactors.from_dict(eff)))
                argv = bench_argv(p.config)
                same = next((n for n, v in variants.items() if v == argv), None)
                name = same or f"moetui plan after tune ({w})"
                variants.setdefault(name, argv)
                out["plan_after_tune"] = {"variant": name, "prompt_tps": p.prompt_tps, "decode_tps": p.decode_tps,
                                          "config": p.config.to_dict()}
                save()
        if args.grid:  # placement (llama.cpp's fit, moetui's plan) x load mode x ubatch
            base_plan = plans[next(iter(plans))]
            kv = base_plan.config.cache_type_k
            placements = {"fit": fit_bench_args(fit["line"]) if fit["rc"] == 0 else None,
                          "plan": [a for a in bench_argv(base_plan.config)]}
            if kv != "f16":  # llama.cpp's fit given the plan's cache type: the placement it would pick then
                fit_kv = fit_params(args.ctx, kv)
                out["fit_" + kv] = fit_kv
                if fit_kv["rc"] == 0 and fit_kv["line"].startswith("-c"):
                    placements[f"fit ({kv} cache)"] = [*fit_bench_args(fit_kv["line"]), "-ctk", kv, "-ctv", kv]
            for pname, pargs in placements.items():
                if not pargs:
                    continue
                pl = _placement_only(pargs)
                for lm, ub in args.grid_modes:
                    argv = [*pl, "-fa", "on", "-lm", lm, "-ub", str(ub), "-b", str(max(2048, ub))]
                    if not any(_same_test(argv, v) for v in variants.values()):
                        variants[f"grid: {pname} placement, -lm {lm}, -ub {ub}"] = argv
        out["variants"] = variants
        tests = ["-p", str(args.n_prompt), "-n", str(args.n_gen)]
        if args.ctx > WORKLOADS["long-prompt"].context_needed:
            tests = ["-p", f"{args.n_prompt},{WORKLOADS['long-prompt'].prompt_tokens}", "-n", str(args.n_gen)]
        names = list(variants)
        for rnd in range(args.rounds):  # interleaved: A B C ... then ... C B A
            for name in (names if rnd % 2 == 0 else names[::-1]):
                rows = llama_bench([*variants[name], *tests, "-r", str(args.reps)], timeout=300)
                out["runs"].append({"variant": name, "round": rnd, "rows": rows})
                save()
    out["seconds"] = time.perf_counter() - t_cell
    return out


class _NoCap:  # a dry run of the cell on a machine with no GPU to cap (the script's own test)
    def __enter__(self) -> "_NoCap":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _placement_only(argv: list[str]) -> list[str]:
    keep, out, i = {"-ngl", "-ot", "-ncmoe", "-ts", "-sm", "-mg", "-ctk", "-ctv"}, [], 0
    while i < len(argv):
        if argv[i] in keep and i + 1 < len(argv):
            out += argv[i:i + 2]
            i += 2
        else:
            i += 1
    return out


def _same_test(a: list[str], b: list[str]) -> bool:
    def norm(v: list[str]) -> dict[str, str]:
        d = {v[i]: v[i + 1] for i in range(0, len(v) - 1, 2) if v[i].startswith("-")}
        d.setdefault("-lm", "auto")
        d.setdefault("-ub", "512")
        d.setdefault("-fa", "on")
        d.pop("-b", None)
        d.pop("-t", None)
        d.pop("--repack", None)  # with -lm none llama.cpp uses the GPU's host buffers, never CPU_REPACK
        d.pop("-ctk", None) if d.get("-ctk") == "f16" else None
        d.pop("-ctv", None) if d.get("-ctv") == "f16" else None
        return d

    return norm(a) == norm(b)


# ---- report -------------------------------------------------------------------------------------------
def _samples(rows: list[dict[str, Any]], n_prompt: int, n_gen: int) -> list[float]:
    out: list[float] = []
    for r in rows:
        if r.get("n_prompt") == n_prompt and r.get("n_gen") == n_gen:
            out += [float(x) for x in r.get("samples_ts") or [r.get("avg_ts", 0.0)]]
    return out


def summarise_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Per variant: every sample of every round (interleaved), median and range, seconds per turn."""
    from moetui.sizing.workload import WORKLOADS

    long_p = WORKLOADS["long-prompt"].prompt_tokens
    by: dict[str, dict[str, list[float]]] = {}
    n_prompt = 2048
    per_process: dict[str, list[float]] = {}
    for run in cell["runs"]:
        v = by.setdefault(run["variant"], {"pp": [], "pp_long": [], "tg": []})
        for r in run["rows"]:
            if r.get("error"):
                v.setdefault("errors", []).append(r["error"])  # type: ignore[arg-type]
        v["pp"] += _samples(run["rows"], n_prompt, 0)
        v["pp_long"] += _samples(run["rows"], long_p, 0)
        tg = _samples(run["rows"], 0, 128)
        v["tg"] += tg
        if tg:
            per_process.setdefault(run["variant"], []).append(statistics.median(tg))
    pooled = _pool_same_lines(cell.get("variants") or {}, by, per_process)
    out: dict[str, Any] = {}
    for name, v in by.items():
        med = {k: statistics.median(x) if x else None for k, x in v.items() if k != "errors"}
        rng = {k: [min(x), max(x)] if x else None for k, x in v.items() if k != "errors"}
        chat, long_w = WORKLOADS["chat"], WORKLOADS["long-prompt"]
        out[name] = {"median": med, "range": rng, "n": {k: len(x) for k, x in v.items() if k != "errors"},
                     "errors": v.get("errors", []),
                     "turn_chat_s": chat.turn_seconds(med["pp"], med["tg"]) if med["pp"] and med["tg"] else None,
                     "turn_long_prompt_s": (long_w.turn_seconds(med["pp_long"], med["tg"])
                                            if med["pp_long"] and med["tg"] else None),
                     "pooled_with": pooled.get(name, []), "decode_by_process": per_process.get(name, [])}
    return out


def _pool_same_lines(variants: dict[str, list[str]], by: dict[str, dict[str, list[float]]],
                     per_process: dict[str, list[float]]) -> dict[str, list[str]]:
    """Variants that are one and the same llama-bench line (the tuner kept the plan, say) were benched as
    separate processes; their samples are pooled so that the same line is not reported twice with two values
    (decode differs by up to ~20% between processes of one line on the lent host, tuning/results/decode_noise)."""
    names = [n for n in by if n in variants]
    groups: list[list[str]] = []
    for n in names:
        g = next((g for g in groups if _same_test(variants[g[0]], variants[n])), None)
        (g.append(n) if g is not None else groups.append([n]))
    pooled: dict[str, list[str]] = {}
    for g in (g for g in groups if len(g) > 1):
        merged = {k: [x for n in g for x in by[n].get(k, [])] for k in ("pp", "pp_long", "tg")}
        procs = [x for n in g for x in per_process.get(n, [])]
        for n in g:
            by[n].update(merged)
            per_process[n] = procs
            pooled[n] = [m for m in g if m != n]
    return pooled


def _tunes_agree(cell: dict[str, Any], summ: dict[str, Any]) -> dict[str, Any] | None:
    """Two tunes from scratch: each winner's chat turn as llama-bench measured it; the ratio slower/faster."""
    again = cell.get("tunes_again") or []
    if not again or "moetui tuned" not in summ:
        return None
    names = ["moetui tuned"] + [a.get("same_as") or f"moetui tuned (tune {i + 2})" for i, a in enumerate(again)]
    turns = [summ.get(n, {}).get("turn_chat_s") for n in names]
    if not all(turns):
        return None
    return {"winners": [cell["tune"]["label"]] + [a["label"] for a in again], "turns": [round(t, 2) for t in turns],
            "ratio": round(max(turns) / min(turns), 3)}


def _plan_after_tune(cell: dict[str, Any], summ: dict[str, Any]) -> dict[str, Any] | None:
    """The plan made with the factors one tune refit: its predicted prompt and decode over llama-bench's."""
    pa = cell.get("plan_after_tune")
    meas = (summ.get(pa["variant"]) or {}).get("median") if pa else None
    if not meas or not meas.get("pp") or not meas.get("tg"):
        return None
    return {"variant": pa["variant"], "pred_pp": pa["prompt_tps"], "meas_pp": meas["pp"], "pred_tg": pa["decode_tps"],
            "meas_tg": meas["tg"], "prompt": _r(pa["prompt_tps"], meas["pp"]), "decode": _r(pa["decode_tps"], meas["tg"])}


def _vram_cell(nbytes: int | None, allowed: float) -> str:
    if not nbytes:
        return "-"
    return f"{nbytes / GiB:.2f}" + (f" (over the {allowed / GiB:.2f} the margin leaves)" if nbytes > allowed else "")


def proxy_info() -> Any:
    """The proxy's tensors (ModelInfo) for predicting memory in the report, which runs where the 17 GiB proxy
    is not: the header a proxy of its shape and mix has, read from memory."""
    from moetui.model.virtual import model_info_for_shape

    return model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")


def predicted_vram(info: Any, argv: list[str], n_ctx: int) -> int:
    """moetui's memory model applied to a llama-bench line (its -ot patterns matched against the tensor names,
    as llama.cpp's regex search does): the GPU bytes once running, as the plan predicts its own."""
    import re

    from moetui.sizing.placement import Assignment, MemorySettings, memory_by_device

    opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
    patterns = [re.compile(o.split("=")[0]) for o in opts.get("-ot", "").split(";") if o]
    first_in_ram = int(opts.get("-ncmoe", opts.get("--n-cpu-moe", 0)))  # llama.cpp's first N layers' experts
    cpu: dict[int, set[str]] = {}
    for t in info.tensors:
        if t.expert_part is None or t.layer is None:
            continue
        if t.layer < first_in_ram or any(p.search(t.name) for p in patterns):
            cpu.setdefault(t.layer, set()).add(t.expert_part)
    gpu = "CUDA0"
    a = Assignment([gpu], [gpu] * info.n_layers, cpu, gpu, -1)
    s = MemorySettings(n_ctx, opts.get("-ctk", "f16"), opts.get("-ctv", "f16"), int(opts.get("-ub", 512)),
                       opts.get("-fa", "on") != "off")
    return memory_by_device(info, a, s)[gpu].total


def _r(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def stage_report(args: argparse.Namespace) -> None:
    cells = [json.loads(f.read_text()) for d in args.dirs for f in sorted(Path(d).glob("cell*.json"))]
    rows, lines = [], ["# moetui vs llama.cpp's own fit, measured by llama-bench", "",
                       "Rerun: `tuning/gpu/README.md` (speed_vs_fit section). Qwen3-30B-A3B Q4_K_M-shaped proxy "
                       "(17.28 GiB, random weights) on one H200 whose usable VRAM is capped by a process holding the "
                       "rest; every figure is llama-bench's own (one CUDA build of the llama.cpp that llama-cpp-python "
                       "0.3.36 vendors), variants interleaved (A B C ... C B A), pp2048 / tg128 at depth 0 "
                       "(+ pp16384 where the context holds it); ranges are min-max over every repetition. Seconds per "
                       "turn: chat = 2048 prompt tokens / pp2048 + 256 reply tokens / tg128 (the chat workload's 8K "
                       "depth is not applied to the measurement), long-prompt = 16384 / pp16384 + 256 / tg128. One line "
                       "benched under two names (the tuner kept the plan) is one line: its samples are pooled. VRAM: "
                       "moetui's memory model applied to each line (within +0.9% of NVML for the running plans "
                       "measured here); `tuned_vs_grid` is over every grid row, `tuned_vs_grid_within_margin` only "
                       "over rows that keep the 1 GiB margin both llama.cpp's fit and moetui keep (most grid rows at "
                       "ubatch 2048 spend part of it on the bigger compute buffer).", ""]
    info = proxy_info()
    for cell in sorted(cells, key=lambda c: (c["ctx"], c["cap_gib"])):
        summ = summarise_cell(cell)
        fit = summ.get("llama-fit (llama.cpp defaults)", {})
        allowed = cell["cap_gib"] * GiB - cell.get("margin_mib", MARGIN_MIB) * 2**20
        vram = {n: predicted_vram(info, a, cell["ctx"]) for n, a in (cell.get("variants") or {}).items()}
        lines += [f"## {cell['cap_gib']:g} GiB usable VRAM, context {cell['ctx']}", "",
                  "| variant | pp2048 tok/s | pp16384 tok/s | tg128 tok/s | chat turn s | long-prompt turn s | vs fit: prompt | decode | chat turn | VRAM GiB (moetui's model) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]

        def fmt(v: dict[str, Any], k: str, nd: int = 0) -> str:
            m, rg = v["median"].get(k), v["range"].get(k)
            return f"{m:.{nd}f} ({rg[0]:.{nd}f}-{rg[1]:.{nd}f})" if m else "-"

        for name, v in summ.items():
            f = fit.get("median", {})
            label = name + (f" (same line as {', '.join(v['pooled_with'])}: samples pooled)" if v["pooled_with"] else "")
            lines.append(f"| {label} | {fmt(v, 'pp')} | {fmt(v, 'pp_long')} | {fmt(v, 'tg', 1)} | "
                         f"{v['turn_chat_s'] or 0:.2f} | {v['turn_long_prompt_s'] or 0:.2f} | "
                         f"{_r(v['median'].get('pp'), f.get('pp')) or '-'} | {_r(v['median'].get('tg'), f.get('tg')) or '-'} | "
                         f"{_r(v['turn_chat_s'], fit.get('turn_chat_s')) or '-'} | "
                         f"{_vram_cell(vram.get(name), allowed)} |"
                         + (f" errors: {v['errors'][0][:80]}" if v["errors"] else ""))
        tuned = summ.get("moetui tuned") or {}
        planned = next((summ[k] for k in summ if k.startswith("moetui plan")), {})
        grid = [v for k, v in summ.items() if k.startswith(("grid", "llama-fit", "--cpu-moe", "moetui plan"))]
        best_grid = min(grid, key=lambda v: v["turn_chat_s"] or 1e9) if grid else {}
        in_margin = [summ[k] for k in summ if summ[k] in grid and vram.get(k, 0) <= allowed]
        best_in_margin = min(in_margin, key=lambda v: v["turn_chat_s"] or 1e9) if in_margin else {}
        subject = tuned or planned
        row = {"cap_gib": cell["cap_gib"], "ctx": cell["ctx"],
               "subject": "moetui tuned" if tuned else "moetui plan (no tune in this run)",
               "prompt_ratio": _r((subject.get("median") or {}).get("pp"), fit.get("median", {}).get("pp")),
               "decode_ratio": _r((subject.get("median") or {}).get("tg"), fit.get("median", {}).get("tg")),
               "turn_ratio_chat": _r(subject.get("turn_chat_s"), fit.get("turn_chat_s")),
               "turn_ratio_long_prompt": _r(subject.get("turn_long_prompt_s"), fit.get("turn_long_prompt_s")),
               "tuned_vs_grid": _r(best_grid.get("turn_chat_s"), tuned.get("turn_chat_s")) if tuned else None,
               "tuned_vs_grid_within_margin": (_r(best_in_margin.get("turn_chat_s"), tuned.get("turn_chat_s"))
                                               if tuned and vram else None),
               "plan_vs_tuned": _r(tuned.get("turn_chat_s"), planned.get("turn_chat_s")) if tuned and planned else None,
               "tune_seconds": round(cell["tune"]["seconds"], 1) if cell.get("tune") else None}
        agree = _tunes_agree(cell, summ)
        if agree:
            row["tunes_agree"] = agree["ratio"]
        after = _plan_after_tune(cell, summ)
        if after:
            row["plan_after_tune_over_measured"] = {"prompt": after["prompt"], "decode": after["decode"]}
        rows.append(row)
        spread = [(max(p) - min(p)) / statistics.median(p) for p in (v["decode_by_process"] for v in summ.values())
                  if len(p) > 1]
        if spread:
            lines += ["", f"- decode noise: the medians of one line's llama-bench processes differ by up to "
                          f"{max(spread):.0%} (median over lines {statistics.median(spread):.0%}); a decode ratio "
                          "inside that is a tie"]
        chat_plan = (cell.get("plans") or {}).get("chat") or {}
        mp = cell.get("memory_proof") or {}
        if chat_plan and mp.get("nvml_process_bytes"):
            pred = sum(m["total"] for d, m in chat_plan["memory"].items() if d != "CPU")
            used = mp["nvml_process_bytes"]
            lines += ["", f"- memory: the chat plan predicted {pred / GiB:.3f} GiB on the GPU, NVML measured "
                          f"{used / GiB:.3f} GiB with its full {cell['ctx']}-token context loaded ({(pred - used) / used:+.2%})"]
            if mp.get("nvml_after_compute_bytes"):
                busy = mp["nvml_after_compute_bytes"]
                lines.append(f"- memory after a 2048-token prompt (what a running chat holds: CUDA keeps lazily loaded "
                             f"kernels and its matmul scratch pool): NVML {busy / GiB:.3f} GiB ({(pred - busy) / busy:+.2%} "
                             "predicted over measured; the prediction is for this running state)")
        if chat_plan and planned:
            lines.append(f"- plan's own prediction (default factors): prompt {chat_plan['prompt_tps']:.0f} vs measured "
                         f"{planned['median'].get('pp') or 0:.0f} tok/s, decode {chat_plan['decode_tps']:.1f} vs "
                         f"{planned['median'].get('tg') or 0:.1f}")
        if cell.get("tune"):
            t = cell["tune"]
            lines.append(f"- tune: {len(t['probes'])} probes in {t['seconds']:.0f} s ({t['stopped']}); winner {t['label']}")
            tm = t.get("tuner_measured") or {}
            if tm.get("tg") and tuned:
                lines.append(f"- the tuner's own measurement of its winner (moetui's worker) vs llama-bench of the "
                             f"exported line: decode {tm['tg']:.1f} vs {tuned['median'].get('tg') or 0:.1f} tok/s "
                             f"({_r(tuned['median'].get('tg'), tm['tg'])}x)")
            lines += [f"  - probe {pr}" for pr in t["probes"]]
            lines += [f"  - compared: {d}" for d in t.get("decisions") or []]
        if agree:
            lines.append(f"- two tunes from scratch: winners {agree['winners']}; chat turn {agree['turns']} s by "
                         f"llama-bench, the slower over the faster {agree['ratio']}")
        if after:
            lines.append(f"- the plan after one tune (refit factors), `{after['variant']}`: predicted prompt "
                         f"{after['pred_pp']:.0f} vs measured {after['meas_pp']:.0f} tok/s ({after['prompt']}x), decode "
                         f"{after['pred_tg']:.1f} vs {after['meas_tg']:.1f} ({after['decode']}x)")
        lines += [f"- llama-fit-params: `{(cell.get('fit') or {}).get('line', '')[:150]}...`",
                  f"- summary row: `{json.dumps(row)}`", ""]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _grid_modes(text: str) -> list[tuple[str, int]]:
    return [(m, int(u)) for m, u in (pair.split(":") for pair in text.split(","))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("prep")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--caps", type=float, nargs="*", default=list(CAPS))
    p.add_argument("--ctxs", type=int, nargs="*", default=list(CTXS))
    p.add_argument("--bench-cap", type=float, default=12)
    p.add_argument("--calib-ncmoe", type=int, default=24)
    c = sub.add_parser("cell")
    c.add_argument("--gib", type=float, required=True)
    c.add_argument("--ctx", type=int, default=8192)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--n-prompt", type=int, default=2048)
    c.add_argument("--n-gen", type=int, default=128)
    c.add_argument("--rounds", type=int, default=2)
    c.add_argument("--reps", type=int, default=3, help="llama-bench repetitions per round")
    c.add_argument("--tune-budget", type=float, default=90)
    c.add_argument("--tune-workload", default="chat")
    c.add_argument("--tunes", type=int, default=1, help="tune this many times from scratch (agreement)")
    c.add_argument("--cpu-moe", action="store_true")
    c.add_argument("--grid", action="store_true")
    c.add_argument("--grid-modes", type=_grid_modes, default=_grid_modes("none:512,none:2048,auto:2048"),
                   help="load mode:ubatch pairs the grid tries for each placement")
    c.add_argument("--prove-memory", action="store_true")
    c.add_argument("--plan-workloads", type=lambda t: t.split(","), default=None,
                   help="plan (and bench) only these workloads, e.g. chat,long-prompt (default: all that fit)")
    c.add_argument("--no-cap", action="store_true", help="no VRAM cap (a dry run without a GPU)")
    r = sub.add_parser("report")
    r.add_argument("dirs", nargs="+")
    r.add_argument("--json", help="write the summary rows here (tuning/results/speed_vs_fit.json)")
    args = ap.parse_args()
    if args.stage == "report":
        stage_report(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "prep":
        stage_prep(args)
    elif args.stage == "cell":
        stage_cell(args)


if __name__ == "__main__":
    main()
