"""`moetui export MODEL`: the config as llama-server / llama-cli / llama-bench command lines, a
llama-cpp-python script, or a config file for `moetui run --config`."""

from __future__ import annotations

import argparse
import json
import sys

from moetui.cli.settings_args import add_settings_arguments, config_in_force, rig_for, settings_from_args
from moetui.export.quoting import SHELLS
from moetui.export.render import EXPORT_TOOLS, render


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="GGUF path (may not exist yet: exported with a warning)")
    p.add_argument("--config", metavar="FILE", help="a moetui config (JSON) — planned or tuned; default: the "
                   "config in force for the settings (the tuned profile where it answers them, else the plan)")
    add_settings_arguments(p, rig_help="the rig the lines are for: a reference rig name or 'auto' (this machine)")
    p.add_argument("--tool", choices=EXPORT_TOOLS, action="append",
                   help="what to write (repeatable); default: server, cli and bench")
    p.add_argument("--shell", choices=SHELLS, default="posix", help="quote for this shell (default posix)")
    p.add_argument("--binary", metavar="PATH", help="the llama-server to write for (its --help decides the "
                   "flag spellings; llama-cli/llama-bench beside it); default: the one on PATH, else the "
                   "llama.cpp vendored by llama-cpp-python")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    rig = None if args.config else rig_for(settings)  # a config file names its own settings
    cfg = config_in_force(args, settings, rig).config  # said on stderr: which config, and why
    tools = args.tool or ["server", "cli", "bench"]
    results: list[dict[str, object]] = []
    texts: list[str] = []
    warned: list[str] = []
    for tool in tools:
        r = render(cfg, tool, args.shell, args.binary)
        for w in r.warnings:
            if w not in warned:
                warned.append(w)
                print(f"moetui: warning: {w}", file=sys.stderr)
        results.append(r.data)
        texts.append(r.text)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(texts))
    return 0
