"""`moetui plan MODEL`: size a model for a rig — placement, context, KV type, memory per device, tok/s."""

from __future__ import annotations

import argparse
import sys

from moetui.cli.argtypes import GB_AMOUNT
from moetui.cli.output import human_bytes, print_json, table
from moetui.errors import ConfigError
from moetui.hardware import load_rig
from moetui.sizing.workload import parse_workload
from moetui.runtime.rpc_ctypes import probe

# gguf (via model, sizing, tuner): imported inside the functions that need it, to keep start-up fast

GB = 1e9


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a local GGUF, a shape preset (qwen3-30b-a3b[:Q8_0]) or a hub REPO:QUANT")
    p.add_argument("--rig", default="auto", help="a reference rig name (a preset from presets/rigs) or 'auto'")
    p.add_argument("--ctx", type=int, default=None, help="target context (default: min(native, 32768))")
    p.add_argument("--vram-budget", type=GB_AMOUNT, default=None, metavar="GB", help="cap the GPU memory used, GB")
    p.add_argument("--margin", type=GB_AMOUNT, default=None, metavar="GB", help="VRAM kept free per GPU, GB (default 0.5)")
    p.add_argument("--kv", choices=["f16", "q8_0"], default=None, help="force the KV cache type")
    p.add_argument("--experts-in-ram", choices=["last", "first"], default="last",
                   help="which layers' experts stay in RAM when not all fit: the last (default, as llama.cpp's "
                        "fit) or the first (as --n-cpu-moe)")
    p.add_argument("--ubatch", type=int, default=None,
                   help="n_ubatch (prompt chunk size; default: the one that pays for itself on the workload)")
    p.add_argument("--workload", default=None, metavar="NAME|P,D,R",
                   help="what a turn looks like: chat (default), long-prompt, decode, or PROMPT,DEPTH,REPLY tokens")
    p.add_argument("--rpc", metavar="HOST:PORT[=CAP],...", help="plan across this host and these ggml-rpc-servers (asked for their memory)")
    p.add_argument("--no-dry-run", action="store_true",
                   help="show the formula's memory figures without llama.cpp's dry run (no_alloc) of the config")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def load_model(ref: str):
    from moetui.hub.resolve import resolve_model  # gguf and the hub client: not at the CLI's start

    return resolve_model(ref)


def run(args: argparse.Namespace) -> int:
    from moetui.sizing.plan import PlanOptions  # gguf, via the sizing core and the tuner: not at the CLI's start
    from moetui.tuner.active import plan_for_rig
    from moetui.tuner.store import ProfileStore

    for name in ("vram_budget", "margin"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
    if args.ctx is not None and args.ctx <= 0:
        raise ConfigError("--ctx must be positive")
    model = load_model(args.model)
    rig = load_rig(args.rig)
    if args.rpc:
        rig.remotes = probe(args.rpc)
    if args.ubatch is not None and args.ubatch <= 0:
        raise ConfigError("--ubatch must be positive")
    o = PlanOptions(n_ctx=args.ctx, cache_type=args.kv, n_ubatch=args.ubatch,
                    n_batch=max(2048, args.ubatch) if args.ubatch else None, workload=parse_workload(args.workload),
                    experts_in_ram=args.experts_in_ram)
    if args.margin is not None:
        o.vram_margin_bytes = int(args.margin * GB)
    if args.vram_budget is not None:
        o.vram_budget_bytes = int(args.vram_budget * GB)
    store = ProfileStore()
    p = plan_for_rig(model, rig, o, store=store)  # with what a tune on this rig measured
    for w in store.warnings:  # a corrupt profile is said, not silently skipped
        print(f"moetui: warning: {w}", file=sys.stderr)
    check = _dry_run_check(p, model, args)
    if args.json:
        print_json({"model": model.path, "rig": rig.name, **p.to_dict(),
                    "dry_run": {"checked": check.checked, "note": check.note,
                                "compared": {d: {k: list(v) for k, v in c.items()} for d, c in check.compared.items()}}})
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


def _dry_run_check(p, model, args: argparse.Namespace):
    """The plan's memory, checked by llama.cpp's own dry run where it can run here (moetui.runtime.dry_run)."""
    from moetui.runtime.dry_run import check_plan  # noqa: PLC0415
    from moetui.sizing.dry_check import formula_only  # noqa: PLC0415

    if args.no_dry_run:
        check = formula_only("--no-dry-run")
    else:
        check = check_plan(p.memory, p.config, on_this_machine=args.rig == "auto" and not args.rpc,
                           header_parts=model.header_parts, budgets=p.budgets)
    p.explanation.append(check.note)
    return check
