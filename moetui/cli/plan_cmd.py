"""`moetui plan MODEL`: size a model for a rig — placement, context, KV type, memory per device, tok/s."""

from __future__ import annotations

import argparse
import sys

from moetui.cli.output import human_bytes, print_json, table
from moetui.cli.settings_args import add_settings_arguments, rig_for, settings_from_args

# gguf (via model, sizing, the resolver): imported inside the functions that need it, to keep start-up fast


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a local GGUF, a shape preset (qwen3-30b-a3b[:Q8_0]) or a hub REPO:QUANT")
    add_settings_arguments(p)
    p.add_argument("--no-dry-run", action="store_true",
                   help="show the formula's memory figures without llama.cpp's dry run (no_alloc) of the config")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def load_model(ref: str):
    from moetui.hub.resolve import resolve_model  # gguf and the hub client: not at the CLI's start

    return resolve_model(ref)


def run(args: argparse.Namespace) -> int:
    from moetui.resolver import plan_for  # gguf, via the sizing core: not at the CLI's start
    from moetui.tuner.store import ProfileStore

    settings = settings_from_args(args)
    model = load_model(args.model)
    rig = rig_for(settings)
    draft = load_model(settings.draft_path) if settings.draft_path else None
    store = ProfileStore()
    p = plan_for(model, rig, settings, draft=draft, store=store)  # with what a tune on this rig measured
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
