"""`moetui tui [MODEL]` (and `moetui` with no arguments): open the terminal app."""

from __future__ import annotations

import argparse

from moetui.hardware import load_preset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="select this model at start: a GGUF path, a shape preset (qwen3-30b-a3b:Q4_K_M) or REPO:QUANT")
    p.add_argument("--rig", metavar="NAME", default="auto",
                   help="plan for a reference rig (`moetui detect --rig list` lists them) instead of detecting this machine")


def run(args: argparse.Namespace) -> int:
    rig = None
    if getattr(args, "rig", "auto") not in (None, "auto"):
        rig = load_preset(args.rig)  # a bad name raises ConfigError: one line, exit 2, before the screen opens
    # textual: loaded when this runs, not at start-up
    from moetui.ui.app import run_app

    run_app(getattr(args, "model", None), rig=rig)
    return 0
