"""`moetui export MODEL`: the config as llama-server / llama-cli / llama-bench command lines, a
llama-cpp-python script, or a config file for `moetui run --config`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from moetui.config import RunConfig
from moetui.export.commandline import export_command
from moetui.export.python_snippet import python_snippet
from moetui.export.quoting import SHELLS

if TYPE_CHECKING:
    from moetui.tuner.active import ActiveConfig

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


def announce(active: ActiveConfig, model: str) -> RunConfig:
    """Say on stderr when a tuned profile is used, so the user knows where the settings come from."""
    if active.source == "tuned":
        print(f"moetui: using the tuned profile for {model} (`moetui tune {model} --retune` to redo it)", file=sys.stderr)
    return active.config


def run(args: argparse.Namespace) -> int:
    if args.config:
        cfg = RunConfig.load(args.config, model_path=args.model)  # MODEL on the command line wins over the file's
    else:  # the tuned profile, else the plan for this rig
        from moetui.tuner.active import active_for_model  # the tuner and gguf: only when it runs
        from moetui.tuner.store import ProfileStore  # noqa: PLC0415  (with the tuner, above)

        store = ProfileStore()
        cfg = announce(active_for_model(args.model, store=store), args.model)
        for w in store.warnings:  # a corrupt profile is said, as tune says it, not silently skipped
            print(f"moetui: warning: {w}", file=sys.stderr)
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
