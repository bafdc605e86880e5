"""The user's settings on the command line: one set of flags for `plan`, `tune`, `export` and `run` (and
`bench`), read into one moetui.sizing.settings.Settings, validated once. Memory amounts are GiB, as the
screens show them. A setting refused names its flag."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from moetui.cli.argtypes import GIB_AMOUNT
from moetui.errors import ConfigError
from moetui.hardware import load_rig
from moetui.hardware.rig import Rig
from moetui.config import CACHE_TYPES
from moetui.config.units import gib_bytes
from moetui.runtime.rpc_ctypes import probe
from moetui.sizing.settings import EXPERT_RAM_ORDERS, Settings
from moetui.sizing.workload import DEFAULT_WORKLOAD, WORKLOADS, parse_workload

if TYPE_CHECKING:
    from moetui.resolver import ActiveConfig

# Settings field -> the flag that sets it (for the error that names it)
FLAGS = {"n_ctx": "--ctx", "vram_margin_bytes": "--margin", "vram_budget_bytes": "--vram-budget",
         "workload": "--workload", "cache_type": "--kv", "n_ubatch": "--ubatch", "experts_in_ram": "--experts-in-ram",
         "draft_path": "--draft", "rpc_hosts": "--rpc", "rig": "--rig", "n_parallel": "--parallel"}


def add_settings_arguments(p: argparse.ArgumentParser, *, rig_help: str | None = None) -> None:
    g = p.add_argument_group("settings (the same for plan, tune, export and run)")
    g.add_argument("--rig", default="auto", help=rig_help or "a reference rig name (a preset from presets/rigs) or "
                   "'auto' (this machine)")
    g.add_argument("-c", "--ctx", type=int, default=None, dest="ctx",
                   help="the context you need (default: the plan's, min(native, 32768))")
    g.add_argument("--margin", type=GIB_AMOUNT, default=None, metavar="GiB",
                   help="VRAM kept free on each GPU, GiB (default 0.5)")
    g.add_argument("--vram-budget", type=GIB_AMOUNT, default=None, metavar="GiB",
                   help="cap the GPU memory used, GiB (shared by the GPUs by their free memory)")
    g.add_argument("--workload", default=None, metavar="NAME|P,D,R",
                   help=f"one turn of what you do: {', '.join(WORKLOADS)} (default {DEFAULT_WORKLOAD}: "
                        f"{WORKLOADS[DEFAULT_WORKLOAD].describe()}) or PROMPT,DEPTH,REPLY tokens")
    g.add_argument("--kv", choices=CACHE_TYPES, default=None, help="force the KV cache type (default: planned)")
    g.add_argument("-ub", "--ubatch", "--ubatch-size", type=int, default=None, dest="ubatch",
                   help="n_ubatch, the prompt chunk size (default: the one that pays for itself on the workload)")
    g.add_argument("--experts-in-ram", choices=EXPERT_RAM_ORDERS, default="last",
                   help="which layers' experts stay in RAM when not all fit: the last (default, as llama.cpp's "
                        "fit) or the first (as --n-cpu-moe)")
    g.add_argument("-md", "--draft", "--model-draft", dest="draft", metavar="PATH",
                   help="a draft GGUF for speculative decoding")
    g.add_argument("--rpc", metavar="HOST:PORT[=CAP],...",
                   help="llama.cpp RPC servers whose devices join (asked for their memory when planning)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The Settings the flags ask for; ConfigError naming the flag for one that cannot be used."""
    try:
        return Settings(
            model=getattr(args, "model", None), rig=args.rig, n_ctx=args.ctx,
            vram_margin_bytes=_bytes(args.margin, "--margin"), vram_budget_bytes=_bytes(args.vram_budget, "--vram-budget"),
            workload=parse_workload(args.workload), cache_type=args.kv, n_ubatch=args.ubatch,
            experts_in_ram=args.experts_in_ram, draft_path=args.draft,
            rpc_hosts=tuple(h.strip() for h in (args.rpc or "").split(",") if h.strip()),
            n_parallel=getattr(args, "n_parallel", None) or 1)  # `serve --parallel N`
    except ConfigError as exc:
        flag = FLAGS.get(exc.field or "") or ("--workload" if "workload" in str(exc) else None)
        raise ConfigError(f"{flag}: {exc}" if flag else str(exc), field=exc.field) from None


def _bytes(gib: float | None, flag: str) -> int | None:
    if gib is None:
        return None
    if gib < 0:
        raise ConfigError(f"{flag} must be >= 0 GiB, not {gib:g}")
    return gib_bytes(gib)


def rig_for(settings: Settings, *, measuring: bool = False) -> Rig:
    """The rig the settings name, with its RPC servers asked for their devices. measuring: the command
    loads the model here (tune, run), so only this machine makes sense."""
    if measuring and settings.rig != "auto":
        raise ConfigError("--rig: this command runs the model on this machine, so --rig must be 'auto' "
                          "(use `moetui plan --rig` or `moetui export --rig` for what-ifs)", field="rig")
    rig = load_rig(settings.rig)
    if settings.rpc_hosts:
        rig.remotes = probe(",".join(settings.rpc_hosts))
    return rig


def config_in_force(args: argparse.Namespace, settings: Settings, rig: Rig, *, use_tuned: bool = True) -> "ActiveConfig":
    """Which config MODEL runs with for these settings (moetui.resolver), said on stderr with why, and any
    corrupt profile found on the way."""
    from moetui.resolver import resolve  # the sizing core and gguf: only when a command needs the config
    from moetui.tuner.store import ProfileStore

    store = ProfileStore()
    draft = None
    if settings.draft_path:
        from moetui.hub.resolve import resolve_model

        draft = resolve_model(settings.draft_path)
    active = resolve(args.model, settings, rig, use_tuned=use_tuned, config_file=getattr(args, "config", None),
                     draft=draft, store=store)
    for w in store.warnings:  # a corrupt profile is said, as tune says it, not silently skipped
        print(f"moetui: warning: {w}", file=sys.stderr)
    announce(active, args.model)
    return active


def announce(active: "ActiveConfig", model: str) -> None:
    """Say on stderr which config is used and why, so the user knows where the settings come from."""
    if active.source == "tuned":
        print(f"moetui: using the tuned profile for {model}: {active.reason} "
              f"(`moetui tune {model} --retune` to redo it)", file=sys.stderr)
    else:
        print(f"moetui: using {active.line()}", file=sys.stderr)
