"""GPU proof: moetui tuned vs llama.cpp's fit vs --cpu-moe vs best-of-grid vs the roofline, on one GPU with
its usable VRAM capped to emulate consumer cards.

Runs on the lent H100 (see tuning/gpu/README.md for the exact commands), in stages that each fit a 10-minute
call:

    source tuning/gpu/setup.sh
    python3 tuning/gpu_bench.py prep --out $OUT            # proxies, bandwidths, VRAM-vs-placement, memory calibration
    python3 tuning/gpu_bench.py cap --gib 12 --ctx 8192 --out $OUT
    python3 tuning/gpu_bench.py report DIR... > tuning/results/gpu_bench.md   # here, merges the stages' JSON

Every variant is measured the same way, in one run: moetui's worker (llama-cpp-python on the CUDA build)
loads the config with the full context allocated (so "it fits" is proven, not assumed) and runs pp512 and
tg128, median of N. The VRAM cap is emulated by a separate process holding the rest of the GPU's memory, so
NVML (the planner), moetui's worker and llama.cpp's own free-memory query (llama-fit-params) all see it.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moetui.config import DraftConfig, RunConfig  # noqa: E402
from moetui.sizing.overrides import layers_from_overrides, n_cpu_moe_overrides  # noqa: E402

MODEL = Path(os.environ.get("MOETUI_GPU_MODEL", "/tmp/moetui-gpu/qwen3-30b-a3b-Q4_K_M.gguf"))
DRAFT = Path(os.environ.get("MOETUI_GPU_DRAFT", "/tmp/moetui-gpu/qwen3-0.6b-Q8_0.gguf"))
GiB = 2**30
MARGIN_MIB = 1024  # the same VRAM margin for llama.cpp's fit (-fitt) and moetui's plan


@dataclass
class Measured:
    variant: str
    config: dict[str, Any]
    pp_tok_s: list[float] = field(default_factory=list)
    tg_tok_s: list[float] = field(default_factory=list)
    vram_used_bytes: int | None = None  # the worker's own GPU memory, NVML per process
    cuda_buffers: dict[str, int] = field(default_factory=dict)  # llama.cpp's logged buffer sizes
    experts_cpu_layers: int | None = None
    load_s: float | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def pp(self) -> float | None:
        return statistics.median(self.pp_tok_s) if self.pp_tok_s else None

    @property
    def tg(self) -> float | None:
        return statistics.median(self.tg_tok_s) if self.tg_tok_s else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pp_median"], d["tg_median"] = self.pp, self.tg
        return d


def log(*a: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


# ---- machine facts --------------------------------------------------------------------------------
def gpu_process_memory(pid: int) -> int | None:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
        pids = {pid} | {c.pid for c in _children(pid)}
        used = [p.usedGpuMemory for p in procs if p.pid in pids and p.usedGpuMemory]
        return sum(used) if used else None
    finally:
        pynvml.nvmlShutdown()


def _children(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def gpu_free_bytes() -> int:
    import pynvml

    pynvml.nvmlInit()
    try:
        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).free
    finally:
        pynvml.nvmlShutdown()


def measure_bandwidths() -> dict[str, float]:
    """GPU memory (device copy), host->device over PCIe (pinned), host RAM (moetui's probe), in GB/s."""
    import torch

    out: dict[str, float] = {}
    n = 2 * GiB
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    torch.cuda.synchronize()
    out["gpu_copy_rw_gbs"] = 10 * 2 * n / (time.perf_counter() - t) / 1e9  # read + write
    del a, b
    h = torch.empty(GiB, dtype=torch.uint8, pin_memory=True)
    d = torch.empty(GiB, dtype=torch.uint8, device="cuda")
    d.copy_(h)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(5):
        d.copy_(h, non_blocking=True)
    torch.cuda.synchronize()
    out["h2d_pinned_gbs"] = 5 * GiB / (time.perf_counter() - t) / 1e9
    del h, d
    torch.cuda.empty_cache()
    from moetui.hardware.bandwidth import measure_ram_bandwidth

    r = measure_ram_bandwidth()
    out["host_ram_gbs"] = float(r.read_gbs or r.best_gbs or 0.0)
    out["host_ram_copy_gbs"] = float(r.copy_gbs or 0.0)
    return out


# ---- VRAM cap ---------------------------------------------------------------------------------------
class VramCap:
    def __init__(self, gib: float) -> None:
        self.gib = gib
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "VramCap":
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tuning/gpu/vram_hold.py"), str(self.gib)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout
        log(self.proc.stdout.readline().strip())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)
        time.sleep(1)


# ---- measuring one config ---------------------------------------------------------------------------
def measure(variant: str, cfg: RunConfig, n_prompt: int, n_gen: int, reps: int,
            variations: list[dict[str, Any]] | None = None) -> list[Measured]:
    """Load once, bench the config and each context-level variation (threads, ubatch) without reloading."""
    from moetui.runtime.client import ModelWorker

    results: list[Measured] = []
    t0 = time.perf_counter()
    cpu = layers_from_overrides(cfg.overrides) or {}
    base = Measured(variant, cfg.to_dict(), experts_cpu_layers=len(cpu))
    try:
        with ModelWorker() as w:
            info = w.start(cfg)
            base.load_s = info.load_s
            base.cuda_buffers = {f"{kind}:{dev}": n for kind, by_dev in (("model", info.buffers.model), ("kv", info.buffers.kv),
                                 ("compute", info.buffers.compute)) for dev, n in by_dev.items()}
            base.vram_used_bytes = gpu_process_memory(info.pid)
            for i, var in enumerate(variations or [{}]):
                m = base if i == 0 else Measured(variant, {**cfg.to_dict(), **var}, vram_used_bytes=base.vram_used_bytes,
                                                 cuda_buffers=base.cuda_buffers, experts_cpu_layers=len(cpu), load_s=base.load_s)
                t1 = time.perf_counter()
                if var:
                    ctx_level = {k: v for k, v in var.items() if k in ("n_ubatch", "n_batch", "flash_attn")}
                    if ctx_level:
                        w.reconfigure(**ctx_level)
                    if "n_threads" in var:
                        w.set_threads(var["n_threads"], var.get("n_threads_batch", var["n_threads"]))
                    m.config = {**cfg.to_dict(), **var}
                r = w.bench(n_prompt=n_prompt, n_gen=n_gen, reps=reps)
                m.pp_tok_s, m.tg_tok_s = list(r.pp_tok_s), list(r.tg_tok_s)
                m.seconds = time.perf_counter() - t1
                results.append(m)
                log(f"{variant}{' ' + json.dumps(var) if var else ''}: pp{n_prompt} {m.pp or 0:.0f} tg{n_gen} {m.tg or 0:.1f} "
                    f"tok/s, VRAM {(m.vram_used_bytes or 0) / GiB:.2f} GiB, experts of {len(cpu)} layers in RAM")
    except Exception as exc:  # a probe that OOMs is a result, not the end of the run
        base.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log(f"{variant}: FAILED {base.error}")
        if not results:
            results.append(base)
    base.seconds = base.seconds or time.perf_counter() - t0
    return results


def llama_fit_config(bin_dir: Path, n_ctx: int) -> tuple[RunConfig | None, str]:
    """llama.cpp's own placement (llama-fit-params at the same margin), as a RunConfig."""
    from moetui.export.parse import parse_server_argv

    cmd = [str(bin_dir / "llama-fit-params"), "-m", str(MODEL), "-c", str(n_ctx), "-fa", "on",
           "-fitt", str(MARGIN_MIB)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if r.returncode or not line.startswith("-c"):
        return None, f"llama-fit-params failed ({r.returncode}): {r.stderr[-400:]}"
    cfg = parse_server_argv(["llama-server", "-m", str(MODEL), *shlex.split(line), "-fa", "on"])
    return cfg, line


def roofline_decode(info: Any, gpu_expert_layers: int, bw: dict[str, float]) -> float:
    """Upper bound on decode tok/s for a placement: active bytes on each side / that side's bandwidth."""
    moe_layers = [layer for layer in info.layers if layer.is_moe]
    frac = info.n_expert_used / max(info.n_expert, 1)
    per_layer = sum(layer.expert_total for layer in moe_layers) / max(len(moe_layers), 1) * frac
    cpu_layers = len(moe_layers) - gpu_expert_layers
    gpu_bytes = info.active_bytes_per_token - cpu_layers * per_layer
    gpu_bw = bw["gpu_copy_rw_gbs"] / 2 * 1e9  # a copy moves each byte twice
    ram_bw = bw["host_ram_gbs"] * 1e9
    return 1.0 / (gpu_bytes / gpu_bw + cpu_layers * per_layer / ram_bw)


# ---- stages -----------------------------------------------------------------------------------------
def stage_prep(args: argparse.Namespace) -> dict[str, Any]:
    from moetui.model.inspect import inspect_file
    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape

    MODEL.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"stage": "prep"}
    if not MODEL.exists():
        r = write_proxy(load_shape("qwen3-30b-a3b"), MODEL, "Q4_K_M")
        out["proxy_write"] = {"bytes": r.bytes_written, "seconds": r.seconds, "gb_per_s": r.gb_per_s}
        log(f"proxy {r.bytes_written / 1e9:.2f} GB in {r.seconds:.1f} s ({r.gb_per_s:.2f} GB/s)")
    if not DRAFT.exists():
        write_proxy(load_shape("qwen3-0.6b"), DRAFT, "Q8_0")
    out["bandwidth"] = measure_bandwidths()
    log("bandwidths", {k: v for k, v in out["bandwidth"].items() if k != "host_ram_detail"})
    info = inspect_file(MODEL)
    from moetui.hardware import detect_rig

    rig = detect_rig()
    out["rig"] = rig.to_dict()
    # VRAM used vs experts moved to RAM, with the planner's prediction of the GPU's bytes beside it
    rows = []
    for n in args.ncmoe:
        cfg = RunConfig(str(MODEL), n_ctx=4096, n_gpu_layers=-1, overrides=n_cpu_moe_overrides(n), flash_attn="on")
        m = measure(f"ncmoe{n}", cfg, 512, 32, 1)[0]
        rows.append({"n_cpu_moe": n, "vram_used_bytes": m.vram_used_bytes, "cuda_buffers": m.cuda_buffers,
                     "pp": m.pp, "tg": m.tg, "error": m.error,
                     "predicted": _predicted_gpu_bytes(info, rig, n, 4096)})
    out["vram_vs_placement"] = rows
    return out


def _predicted_gpu_bytes(info: Any, rig: Any, n_cpu_moe: int, n_ctx: int) -> dict[str, int]:
    """The sizing core's bytes on the GPU for this placement (weights, KV, compute), for the record beside
    what llama.cpp logged and what NVML saw."""
    from moetui.sizing.placement import Assignment, MemorySettings, memory_by_device

    gpu = "CUDA0"
    a = Assignment([gpu], [gpu] * info.n_layers, {il: {"up", "gate", "down"} for il in range(n_cpu_moe)}, gpu)
    m = memory_by_device(info, a, MemorySettings(n_ctx=n_ctx, flash_attn=True), rig.cpu.flags)[gpu]
    return {"weights": m.weights, "kv": m.kv, "compute": m.compute, "overhead": m.overhead}


def stage_cap(args: argparse.Namespace) -> dict[str, Any]:
    from moetui.hardware import detect_rig
    from moetui.model.inspect import inspect_file
    from moetui.sizing.plan import PlanOptions, plan

    info = inspect_file(MODEL)
    bin_dir = Path(os.environ["MOETUI_GPU_BIN"])
    n_layers = sum(1 for layer in info.layers if layer.is_moe)
    P, N, R = args.n_prompt, args.n_gen, args.reps
    out: dict[str, Any] = {"stage": "cap", "cap_gib": args.gib, "n_ctx": args.ctx, "n_prompt": P, "n_gen": N,
                           "reps": R, "results": []}
    res: list[Measured] = []
    path = args.out / f"cap{args.gib:g}_ctx{args.ctx}{'.' + args.tag if args.tag else ''}.json"

    def save() -> None:  # after every step: a run cut at the call's time limit keeps what it measured
        out["results"] = [m.to_dict() for m in res]
        path.write_text(json.dumps(out, indent=1, default=str))

    with VramCap(args.gib):
        out["gpu_free_bytes"] = gpu_free_bytes()
        rig = detect_rig()
        out["rig_gpu_free"] = rig.gpus[0].vram_free_bytes if rig.gpus else None
        # llama-server's default threads are the physical cores (cpu_get_num_math); llama-cpp-python's are
        # half the logical CPUs, so the baselines get llama.cpp's own default explicitly
        t_llama = rig.cpu.performance_cores or rig.cpu.physical_cores
        want = set(args.variants.split(","))
        # 1. all experts in RAM (--cpu-moe)
        if "cpu-moe" in want:
            res += measure("cpu-moe", RunConfig(str(MODEL), n_ctx=args.ctx, overrides=n_cpu_moe_overrides(n_layers),
                                                flash_attn="on", n_threads=t_llama, n_threads_batch=t_llama), P, N, R)
        save()
        # 2. llama.cpp's own fit at the same margin
        fit_cfg, fit_line = llama_fit_config(bin_dir, args.ctx)
        out["llama_fit"] = fit_line
        if fit_cfg and "llama-fit" in want:
            res += measure("llama-fit", fit_cfg.replace(n_threads=t_llama, n_threads_batch=t_llama), P, N, R)
        save()
        # 3. moetui's plan, untuned
        p = plan(info, rig, PlanOptions(n_ctx=args.ctx, vram_margin_bytes=MARGIN_MIB << 20, flash_attn="on",
                                        model_path=str(MODEL)))
        out["plan"] = {"n_cpu_moe": p.n_cpu_moe, "decode_tps": p.decode_tps, "prompt_tps": p.prompt_tps,
                       "explanation": p.explanation, "memory": {d: asdict(m) for d, m in p.memory.items()}}
        if "plan" in want:
            res += measure("moetui-plan", p.config, P, N, R)
        if "plan-last" in want:  # the same number of expert layers in RAM, taken from the end (as llama.cpp's fit does)
            from moetui.sizing.overrides import cpu_expert_overrides

            k_cpu = len(layers_from_overrides(p.config.overrides) or {})
            last = {il: {"up", "gate", "down"} for il in range(n_layers - k_cpu, n_layers)}
            res += measure("moetui-plan-last-layers", p.config.replace(overrides=cpu_expert_overrides(last)), P, N, R)
        save()
        # 4. best-of-grid: expert layers in RAM x threads x ubatch (threads/ubatch without reloading)
        k = len(layers_from_overrides(p.config.overrides) or {})
        grid_layers = sorted({max(0, min(n_layers, k + d)) for d in args.grid_offsets})
        variations = [{"n_threads": t, "n_threads_batch": t, "n_ubatch": ub, "n_batch": max(ub, 2048)}
                      for t in args.grid_threads for ub in args.grid_ubatch]
        for n in grid_layers if "grid" in want else []:
            cfg = RunConfig(str(MODEL), n_ctx=args.ctx, overrides=n_cpu_moe_overrides(n), flash_attn="on")
            res += measure(f"grid-ncmoe{n}", cfg, P, N, R, variations)
            save()
        save()
        # 5. moetui tuned
        tuned = run_tuner(info, rig, p, args) if "tuned" in want else {}
        if tuned:
            out["tuner"] = tuned.get("summary")
        if tuned.get("config"):
            res += measure("moetui-tuned", RunConfig.from_dict(tuned["config"]), P, N, R)
        save()
        # 6. draft model on the tuned (or planned) config: the cost side of speculative decoding
        if args.draft:
            base_cfg = RunConfig.from_dict(tuned["config"]) if tuned.get("config") else p.config
            res += measure_draft(base_cfg, N)
        out["bandwidth"] = args.bandwidth
        if args.bandwidth:
            out["roofline_decode_best_fit"] = roofline_decode(info, n_layers - k, args.bandwidth)
    out["results"] = [m.to_dict() for m in res]
    return out


def run_tuner(info: Any, rig: Any, p: Any, args: argparse.Namespace) -> dict[str, Any]:
    """moetui's auto-tuner within its budget, starting from the plan; its winner is re-measured below the
    same way as every other variant, so the comparison does not rest on the tuner's own figures."""
    from moetui.tuner import ProfileStore, TuneOptions
    from moetui.tuner.engine import Tuner
    from moetui.sizing.settings import Settings

    opts = TuneOptions(Settings(n_ctx=args.ctx, vram_margin_bytes=MARGIN_MIB << 20), budget_s=args.tune_budget,
                       objective="decode", retune=True, n_prompt=args.n_prompt, n_gen=args.n_gen)
    t0 = time.perf_counter()
    probes: list[str] = []

    def on_event(ev: Any) -> None:
        probe = getattr(ev, "probe", None)
        if type(ev).__name__ == "ProbeFinished" and probe is not None:
            b = probe.bench
            line = (f"probe {probe.index} {probe.label}: {probe.status} "
                    f"pp {getattr(b, 'pp_median', 0) or 0:.0f} tg {getattr(b, 'tg_median', 0) or 0:.1f}"
                    f"{' ' + probe.error if probe.error else ''}")
            probes.append(line)
            log("tuner", line)

    result = Tuner(str(MODEL), rig, opts, store=ProfileStore(Path("/tmp/moetui-data/profiles"))).run(on_event)
    best = result.best
    return {"config": best.config.to_dict() if best else None,
            "summary": {"seconds": time.perf_counter() - t0, "stopped": result.stopped, "probes": probes,
                        "best_label": best.label if best else None,
                        "best": {"pp": best.bench.pp_median, "tg": best.bench.tg_median} if best and best.bench else None,
                        "predicted": result.predicted}}


def measure_draft(cfg: RunConfig, n_gen: int) -> list[Measured]:
    """Decode tok/s of a 128-token greedy generation with and without a draft model (random weights:
    acceptance is near zero, so this is the cost side only)."""
    from moetui.runtime.client import DoneEvent, ModelWorker

    out = []
    for name, draft in (("no-draft", None), ("draft-model", DraftConfig(kind="model", model_path=str(DRAFT), draft_max=8)),
                        ("prompt-lookup", DraftConfig(kind="ngram", draft_max=8))):
        m = Measured(name, {**cfg.to_dict(), "draft": asdict(draft) if draft else None})
        try:
            with ModelWorker() as w:
                w.start(cfg.replace(draft=draft))
                speeds, acc = [], []
                for _ in range(3):
                    done = next(ev for ev in w.generate("The quick brown fox", max_tokens=n_gen) if isinstance(ev, DoneEvent))
                    speeds.append(done.stats.decode_tok_s_avg or 0.0)
                    acc.append(done.stats.acceptance)
                m.tg_tok_s = speeds
                m.config["acceptance"] = acc
                log(f"{name}: decode {statistics.median(speeds):.1f} tok/s, acceptance {acc}")
        except Exception as exc:
            m.error = f"{type(exc).__name__}: {exc}"
            log(f"{name}: FAILED {m.error}")
        out.append(m)
    return out


# ---- report -----------------------------------------------------------------------------------------
def stage_report(args: argparse.Namespace) -> None:
    stages = []
    for d in args.dirs:
        for f in sorted(Path(d).glob("*.json")):
            st = json.loads(f.read_text())
            st["file"] = f.name
            stages.append(st)
    print(render_report(stages, args.ram_gbs))


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def render_prep(s: dict[str, Any]) -> list[str]:
    """VRAM used vs experts moved to RAM: NVML per process, llama.cpp's logged CUDA0 buffers, and the sizing
    core's prediction (recomputed here with the current code, from the same model header)."""
    from moetui.hardware.rig import Rig
    from moetui.model.virtual import model_info_for_shape

    info = model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")
    rig = Rig.from_dict(s["rig"])
    gpu = (s["rig"].get("gpus") or [{}])[0]
    bw = s.get("bandwidth", {})
    lines = [f"## Device: {gpu.get('name')} ({(gpu.get('vram_total_bytes') or 0) / GiB:.0f} GiB), driver "
             f"{gpu.get('driver_version')}, CUDA {gpu.get('cuda_version')}", "",
             f"Bandwidths measured there: GPU copy {bw.get('gpu_copy_rw_gbs', 0):.0f} GB/s (read+write), pinned "
             f"host->device {bw.get('h2d_pinned_gbs', 0):.1f} GB/s, host RAM read {bw.get('host_ram_gbs', 0):.1f} GB/s.", "",
             ]
    if not s.get("vram_vs_placement"):
        return lines + [""]
    lines += ["### VRAM vs experts in RAM (Qwen3-30B-A3B Q4_K_M proxy, 4K context, FA on)", "",
             "| experts in RAM (layers) | NVML VRAM used GiB | predicted GiB | error | logged CUDA0 weights GiB | "
             "predicted weights GiB | logged compute MiB | predicted compute MiB | pp512 | tg32 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in s.get("vram_vs_placement", []):
        if r.get("error"):
            lines.append(f"| {r['n_cpu_moe']} | failed: {r['error']} |||||||||")
            continue
        p = _predicted_gpu_bytes(info, rig, r["n_cpu_moe"], 4096)
        pred = sum(p.values())
        used = r["vram_used_bytes"] or 0
        cb = r["cuda_buffers"]
        lines.append(f"| {r['n_cpu_moe']} | {used / GiB:.3f} | {pred / GiB:.3f} | {(pred - used) / used:+.1%} | "
                     f"{cb.get('model:CUDA0', 0) / GiB:.3f} | {p['weights'] / GiB:.3f} | "
                     f"{cb.get('compute:CUDA0', 0) / 2**20:.0f} | {p['compute'] / 2**20:.0f} | {r['pp'] or 0:.0f} | "
                     f"{r['tg'] or 0:.1f} |")
    return lines + [""]


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _merge_caps(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (cap, context): a later run's variants (a tagged file: cap12_ctx8192.rerun.json)
    replace the same variants of the first run, which are kept as '<variant> (first run)'."""
    merged: dict[tuple[float, int], dict[str, Any]] = {}
    for st in sorted((s for s in stages if s.get("stage") == "cap"), key=lambda s: (s["file"].count("."), s["file"])):
        key = (st["cap_gib"], st["n_ctx"])
        if key not in merged:
            merged[key] = {**st, "runs": [st["file"]]}
            continue
        m = merged[key]
        m["runs"].append(st["file"])
        new = {r["variant"] for r in st["results"]}
        kept = []
        for r in m["results"]:
            if r["variant"] in new:
                r = {**r, "variant": f"{r['variant']} (first run)"}
            kept.append(r)
        m["results"] = kept + st["results"]
    return list(merged.values())


def render_report(stages: list[dict[str, Any]], ram_gbs: float | None = None) -> str:
    from moetui.model.virtual import model_info_for_shape

    info = model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")
    n_moe = sum(1 for layer in info.layers if layer.is_moe)
    lines = ["# GPU proof: moetui vs llama.cpp's fit vs --cpu-moe vs best-of-grid (capped VRAM)", "",
             "Rerun: see tuning/gpu/README.md. Qwen3-30B-A3B Q4_K_M-shaped proxy (17.28 GiB, random weights), "
             "usable VRAM capped by a process holding the rest; every variant measured by moetui's worker "
             "(llama-cpp-python on the CUDA build of the llama.cpp it vendors), pp2048 and tg128, median of 3.", ""]
    for s in stages:
        if s.get("stage") == "prep":
            lines += render_prep(s)
    for s in _merge_caps(stages):
        by: dict[str, dict[str, Any]] = {}
        for r in s["results"]:
            r["tg_median"] = r.get("tg_median") or _median(r.get("tg_tok_s") or [])
            r["pp_median"] = r.get("pp_median") or _median(r.get("pp_tok_s") or [])
            by.setdefault(r["variant"], r)
            if r["variant"].startswith("grid") and (r.get("tg_median") or 0) > (by.get("best-of-grid", {}).get("tg_median") or 0):
                by["best-of-grid"] = r
        lines += [f"## VRAM cap {s['cap_gib']:g} GiB, context {s['n_ctx']} (runs: {', '.join(s['runs'])})", "",
                  f"pp{s.get('n_prompt')} / tg{s.get('n_gen')}, {s.get('reps')} repetitions. "
                  f"Free VRAM seen by NVML under the cap: {(s.get('gpu_free_bytes') or 0) / GiB:.2f} GiB.", "",
                  "| variant | threads | ubatch | experts in RAM (layers) | pp tok/s | tg tok/s | VRAM used GiB | error |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in s["results"]:
            c = r.get("config") or {}
            lines.append(f"| {r['variant']} | {c.get('n_threads') or 'default (8)'} | {c.get('n_ubatch')} | "
                         f"{r.get('experts_cpu_layers')} | {r.get('pp_median') or 0:.0f} | {r.get('tg_median') or 0:.1f} | "
                         f"{(r.get('vram_used_bytes') or 0) / GiB:.2f} | {r.get('error') or ''} |")
        tuned, fit, cpu, grid, planned = (by.get(k, {}) for k in ("moetui-tuned", "llama-fit", "cpu-moe", "best-of-grid", "moetui-plan"))
        lines += ["", f"- tuned / best-of-grid decode: {_ratio(tuned.get('tg_median'), grid.get('tg_median'))}",
                  f"- tuned / llama.cpp fit decode: {_ratio(tuned.get('tg_median'), fit.get('tg_median'))}; "
                  f"prompt: {_ratio(tuned.get('pp_median'), fit.get('pp_median'))}",
                  f"- tuned / --cpu-moe decode: {_ratio(tuned.get('tg_median'), cpu.get('tg_median'))}",
                  f"- plan (untuned) / llama.cpp fit decode: {_ratio(planned.get('tg_median'), fit.get('tg_median'))}",
                  f"- predicted decode (plan) {s.get('plan', {}).get('decode_tps', 0):.1f} vs measured "
                  f"{planned.get('tg_median') or 0:.1f} tok/s; predicted prompt {s.get('plan', {}).get('prompt_tps', 0):.0f}"
                  f" (pp512 model) vs measured pp{s.get('n_prompt')} {planned.get('pp_median') or 0:.0f}"]
        pm = {d: m for d, m in (s.get("plan", {}).get("memory") or {}).items() if d != "CPU"}
        if pm and planned.get("vram_used_bytes"):
            pred = sum(v for m in pm.values() for k, v in m.items() if k in ("weights", "kv", "compute", "overhead"))
            used = planned["vram_used_bytes"]
            lines.append(f"- plan's VRAM: predicted {pred / GiB:.2f} GiB vs NVML {used / GiB:.2f} GiB ({(pred - used) / used:+.1%})")
        if s.get("tuner"):
            t = s["tuner"]
            lines.append(f"- tuner: {len(t.get('probes') or [])} probes in {t.get('seconds', 0):.0f} s, stopped by "
                         f"{t.get('stopped')}; winner: {t.get('best_label')}")
        bw = dict(s.get("bandwidth") or {})
        if ram_gbs:
            bw["host_ram_gbs"] = ram_gbs
        k = tuned.get("experts_cpu_layers") or planned.get("experts_cpu_layers")
        if bw.get("gpu_copy_rw_gbs") and bw.get("host_ram_gbs") and k is not None:
            roof = roofline_decode(info, n_moe - k, bw)
            lines.append(f"- roofline decode for {k} expert layers in RAM (GPU {bw['gpu_copy_rw_gbs'] / 2:.0f} GB/s, "
                         f"host RAM {bw['host_ram_gbs']:.1f} GB/s): {roof:.1f} tok/s; tuned reaches "
                         f"{_ratio(tuned.get('tg_median'), roof)} of it")
        lines += [f"- llama-fit-params said: `{(s.get('llama_fit') or '')[:160]}...`", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("prep")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ncmoe", type=int, nargs="*", default=[0, 16, 32, 48])
    c = sub.add_parser("cap")
    c.add_argument("--gib", type=float, required=True)
    c.add_argument("--ctx", type=int, default=8192)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--n-prompt", type=int, default=512)
    c.add_argument("--n-gen", type=int, default=128)
    c.add_argument("--reps", type=int, default=3)
    c.add_argument("--grid-offsets", type=int, nargs="*", default=[0, 2, 4])
    c.add_argument("--grid-threads", type=int, nargs="*", default=[8, 16])
    c.add_argument("--grid-ubatch", type=int, nargs="*", default=[512, 2048])
    c.add_argument("--tune-budget", type=float, default=120)
    c.add_argument("--draft", action="store_true")
    c.add_argument("--variants", default="cpu-moe,llama-fit,plan,grid,tuned",
                   help="which variants to measure (comma list); a later run's variants replace an earlier run's")
    c.add_argument("--tag", default="", help="suffix of the result file, e.g. 'rerun'")
    c.add_argument("--bandwidth-from", type=Path, help="the prep stage's JSON, for the roofline")
    r = sub.add_parser("report")
    r.add_argument("dirs", nargs="+")
    r.add_argument("--ram-gbs", type=float, help="host RAM read bandwidth for the roofline, when the run's own "
                   "probe is not to be trusted")
    args = ap.parse_args()
    if args.stage == "report":
        stage_report(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "prep":
        result = stage_prep(args)
        name = "prep.json"
    else:
        args.bandwidth = json.loads(args.bandwidth_from.read_text())["bandwidth"] if args.bandwidth_from and args.bandwidth_from.exists() else None
        result = stage_cap(args)
        name = f"cap{args.gib:g}_ctx{args.ctx}{'.' + args.tag if args.tag else ''}.json"
    (args.out / name).write_text(json.dumps(result, indent=1, default=str))
    log(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
