"""`moetui export MODEL`: the config as llama-server / llama-cli / llama-bench command lines, a
llama-cpp-python script, or a config file for `moetui run --config`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from moetui.config import RunConfig
from moetui.export.commandline import export_command
from moetui.export.python_snippet import python_snippet
from moetui.export.quoting import SHELLS

TOOLS = ("server", "cli", "bench", "python", "config")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="GGUF path (may not exist yet: exported with a warning)")
    p.add_argument("--config", metavar="FILE", help="a moetui config (JSON) — planned or tuned; default: "
                   "the plan for MODEL, or llama.cpp-like defaults")
    p.add_argument("--tool", choices=TOOLS, action="append",
                   help="what to write (repeatable); default: server, cli and bench")
    p.add_argument("--shell", choices=SHELLS, default="posix", help="quote for this shell (default posix)")
    p.add_argument("--binary", metavar="PATH", help="the llama-server to write for (its --help decides the "
                   "flag spellings; llama-cli/llama-bench beside it); default: the one on PATH, else the "
                   "llama.cpp vendored by llama-cpp-python")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def default_config(model: str) -> RunConfig:
    """The config moetui would run MODEL with on this rig: the sizing core's plan. A .gguf path that does
    not exist yet (the user is about to download it) gets llama.cpp-like defaults; the exported line
    carries a warning about the path."""
    from moetui.hardware import detect_rig
    from moetui.model.resolve import resolve_model
    from moetui.sizing.plan import PlanOptions, plan

    if model.lower().endswith(".gguf") and not Path(model).expanduser().exists():
        return RunConfig(model_path=model)
    tuned = tuned_config(model)
    if tuned is not None:
        return tuned
    return plan(resolve_model(model), detect_rig(), PlanOptions(model_path=model)).config


def tuned_config(model: str) -> RunConfig | None:
    """The config `moetui tune` saved for MODEL on this rig (same llama.cpp), if there is one: measured
    beats predicted. Said on stderr so the user knows where the settings come from."""
    if not Path(model).expanduser().is_file():
        return None
    from moetui.tuner import latest_config
    from moetui.tuner.store import ProfileStore

    store = ProfileStore()
    cfg = latest_config(model, store=store)
    for w in store.warnings:  # a corrupt profile is said, as tune says it, not silently skipped
        print(f"moetui: warning: {w}", file=sys.stderr)
    if cfg is not None:
        print(f"moetui: using the tuned profile for {model} (`moetui tune {model} --retune` to redo it)", file=sys.stderr)
    return cfg


def run(args: argparse.Namespace) -> int:
    if args.config:
        cfg = RunConfig.load(args.config)
        if cfg.model_path != args.model:
            cfg = cfg.replace(model_path=args.model)  # MODEL on the command line wins over the file's
    else:
        cfg = default_config(args.model)
    tools = args.tool or ["server", "cli", "bench"]
    results: list[dict[str, object]] = []
    texts: list[str] = []
    warned: list[str] = []
    for tool in tools:
        if tool == "python":
            text = python_snippet(cfg)
            results.append({"tool": "python", "script": text})
        elif tool == "config":
            text = json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
            results.append({"tool": "config", "config": cfg.to_dict()})
        else:
            cmd = export_command(cfg, tool, binary=args.binary)
            for w in cmd.warnings:
                if w not in warned:
                    warned.append(w)
                    print(f"moetui: warning: {w}", file=sys.stderr)
            text = cmd.render(args.shell)
            results.append(cmd.to_dict(args.shell))
        texts.append(text)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(texts))
    return 0
