"""`moetui plan MODEL`: size a model for a rig — placement, context, KV type, memory per device, tok/s."""

from __future__ import annotations

import argparse
import sys

from moetui.cli.argtypes import GB_AMOUNT
from moetui.cli.output import human_bytes, print_json, table
from moetui.errors import ConfigError

GB = 1e9


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a local GGUF, a shape preset (qwen3-30b-a3b[:Q8_0]) or a hub REPO:QUANT")
    p.add_argument("--rig", default="auto", help="a reference rig name (a preset from presets/rigs) or 'auto'")
    p.add_argument("--ctx", type=int, default=None, help="target context (default: min(native, 32768))")
    p.add_argument("--vram-budget", type=GB_AMOUNT, default=None, metavar="GB", help="cap the GPU memory used, GB")
    p.add_argument("--margin", type=GB_AMOUNT, default=None, metavar="GB", help="VRAM kept free per GPU, GB (default 0.5)")
    p.add_argument("--kv", choices=["f16", "q8_0"], default=None, help="force the KV cache type")
    p.add_argument("--ubatch", type=int, default=512, help="n_ubatch (prompt chunk size)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def load_model(ref: str):
    from moetui.model.resolve import resolve_model

    return resolve_model(ref)


def run(args: argparse.Namespace) -> int:
    from moetui.hardware import load_rig
    from moetui.sizing.plan import PlanOptions, plan

    for name in ("vram_budget", "margin"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
    if args.ctx is not None and args.ctx <= 0:
        raise ConfigError("--ctx must be positive")
    model = load_model(args.model)
    rig = load_rig(args.rig)
    o = PlanOptions(n_ctx=args.ctx, cache_type=args.kv, n_ubatch=args.ubatch, n_batch=max(2048, args.ubatch))
    if args.margin is not None:
        o.vram_margin_bytes = int(args.margin * GB)
    if args.vram_budget is not None:
        o.vram_budget_bytes = int(args.vram_budget * GB)
    from moetui.tuner.store import ProfileStore, measured_efficiency

    store = ProfileStore()
    eff = measured_efficiency(rig, store)
    for w in store.warnings:
        print(f"moetui: warning: {w}", file=sys.stderr)
    if eff is not None:  # a tune on this rig measured how fast it really is
        o.efficiency = eff
    p = plan(model, rig, o)
    if args.json:
        print_json({"model": model.path, "rig": rig.name, **p.to_dict()})
        return 0
    print(f"{model.name or model.path} on {rig.name}")
    print()
    rows = [(d, human_bytes(m.weights), human_bytes(m.kv), human_bytes(m.compute), human_bytes(m.overhead),
             human_bytes(m.total), human_bytes(p.budgets.get(d, 0))) for d, m in p.memory.items() if m.total]
    print(table(rows, ["device", "weights", "KV", "compute", "runtime", "total", "budget"]))
    print()
    lay = []
    for l in p.layers:
        if l.is_moe:
            where = "GPU" if not l.experts_cpu else ("CPU" if not l.experts_gpu else "GPU " + "/".join(l.experts_gpu) + ", CPU " + "/".join(l.experts_cpu))
        else:
            where = "-"
        lay.append((l.index, l.device, where))
    print(table(lay, ["layer", "attention", "experts"]))
    print()
    for line in p.explanation:
        print(f"- {line}")
    print()
    print("llama.cpp flags: " + " ".join(p.llama_args()))
    return 0
