"""`moetui` command line. Each subcommand lives in its own module under moetui/cli/ and defines
`add_arguments(parser)` and `run(args) -> int`. With no subcommand the TUI opens."""

from __future__ import annotations

DESCRIPTION = ("Run Mixture-of-Experts GGUF models as fast as this machine allows: detect the rig, size and place "
               "the model tensor by tensor, tune it live, chat, and export llama.cpp command lines. "
               "With no command the terminal app opens.")

import argparse
import importlib
import sys

from moetui import __version__
from moetui.errors import MoetuiError
from moetui.hub.connection import OFFLINE_ALTERNATIVES

# name -> (module, one-line help). Modules are imported only when their command runs, so
# `moetui inspect` does not pay for Textual or llama-cpp-python.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("moetui.cli.demo_cmd", "make the demo MoE model, inspect, plan and run it (no GPU, model or network needed)"),
    "inspect": ("moetui.cli.inspect_cmd", "show a GGUF's MoE structure, bytes by role, active bytes and KV bytes per token"),
    "proxy": ("moetui.cli.proxy_cmd", "write a synthetic GGUF with a real model's exact shapes (try before you download)"),
    "detect": ("moetui.cli.detect_cmd", "detect GPUs, CPU, RAM, bandwidths and what the installed llama.cpp can do"),
    "plan": ("moetui.cli.plan_cmd", "size a model for a rig: placement, context, KV type, predicted memory and tok/s"),
    "run": ("moetui.cli.run_cmd", "chat or generate with a model in an isolated worker, stats on stderr"),
    "bench": ("moetui.cli.bench_cmd", "measure prompt (pp) and decode (tg) tok/s, median and spread of N runs"),
    "tune": ("moetui.cli.tune_cmd", "probe settings live and keep the fastest; remembered per rig and model"),
    "export": ("moetui.cli.export_cmd", "llama-server / llama-cli / llama-bench command lines or a Python snippet"),
    "serve": ("moetui.cli.serve_cmd", "serve the model as an OpenAI-compatible API (llama.cpp's llama-server), live stats"),
    "models": ("moetui.cli.models_cmd", "catalog models, local GGUFs, a hub repo's quant files; download"),
    "rpc-server": ("moetui.cli.rpc_cmd", "build and run llama.cpp's ggml-rpc-server here, with a memory cap and its tensor cache"),
    "tui": ("moetui.cli.tui_cmd", "open the terminal app"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """only: the subcommand being run; the other commands' modules are then not imported (some pull in
    gguf or the tuner, about 1 s of imports that `moetui detect` would otherwise pay)."""
    parser = argparse.ArgumentParser(prog="moetui", description=DESCRIPTION)

    parser.add_argument("--version", action="version", version=f"moetui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if only is not None and name != only:
            continue
        importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the command's modules are still importing
        print("moetui: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        args = parser.parse_args(["tui", *argv])
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except MoetuiError as exc:
        print(f"moetui: error: {exc}", file=sys.stderr)
        if str(exc).startswith("offline"):  # a HubError: the hub cannot be reached

            print(f"moetui: the hub cannot be reached; {OFFLINE_ALTERNATIVES}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moetui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
