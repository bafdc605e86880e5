"""`moetui` command line. Each subcommand lives in its own module under moetui/cli/ and defines
`add_arguments(parser)` and `run(args) -> int`. With no subcommand the TUI opens."""

from __future__ import annotations

DESCRIPTION = ("Run Mixture-of-Experts GGUF models as fast as this machine allows: detect the rig, size and place "
               "the model tensor by tensor, tune it live, chat, and export llama.cpp command lines. "
               "With no command the terminal app opens.")

import argparse
import importlib
import json
import os
import re
import sys

from moetui import __version__
from moetui.errors import MoetuiError
from moetui.hub.connection import OFFLINE_ALTERNATIVES
from moetui.paths import state_notices

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


class _Parser(argparse.ArgumentParser):
    """argparse, except that with --json a usage error is JSON on stdout too (a script reads one stream)."""

    json_errors = False

    def error(self, message: str) -> None:  # type: ignore[override]
        if self.json_errors:
            print_error_json(message, "usage")
            sys.exit(2)
        super().error(message)


def print_error_json(message: str, kind: str) -> None:
    """The one shape of an error under --json: {"error": what went wrong, "kind": what kind of error}."""
    json.dump({"error": message, "kind": kind}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def error_kind(exc: BaseException) -> str:
    """'does_not_fit', 'config', 'model_file', 'hub', 'worker:oom' ...: the error's class in snake case,
    and a worker failure's kind."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower().removesuffix("_error")
    kind = getattr(exc, "kind", None)
    return f"{name}:{kind}" if kind else name


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """only: the subcommand being run; the other commands' modules are then not imported (some pull in
    gguf or the tuner, about 1 s of imports that `moetui detect` would otherwise pay)."""
    parser = _Parser(prog="moetui", description=DESCRIPTION)

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
    except BrokenPipeError:  # `moetui models | head`: the reader has what it wanted
        _quiet_stdout()
        return 0


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit does not fail on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _Parser.json_errors = "--json" in argv
    parser = build_parser(only=argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        args = parser.parse_args(["tui", *argv])
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except MoetuiError as exc:
        _print_state_notices()
        if getattr(args, "json", False):
            print_error_json(str(exc), error_kind(exc))
        print(f"moetui: error: {exc}", file=sys.stderr)
        if str(exc).startswith("offline"):  # a HubError: the hub cannot be reached

            print(f"moetui: the hub cannot be reached; {OFFLINE_ALTERNATIVES}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moetui: interrupted", file=sys.stderr)
        return 130
    finally:
        _print_state_notices()


def _print_state_notices() -> None:
    """Saved files found corrupt (and moved aside) while the command ran: said once, on stderr."""
    for notice in state_notices():
        print(f"moetui: warning: {notice}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
