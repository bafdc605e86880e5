"""`moetui tune MODEL [settings: --workload chat|long-prompt|decode|P,D,R --ctx N --margin GiB --kv ... --draft PATH]
[--budget S] [--objective turn|decode|balanced|prefill] [--retune] [--json]`: probe settings live, keep the config
with the shortest wait for one turn of the workload (by default), remember it with the settings for this rig +
model + llama.cpp version. A saved profile whose settings answer these is shown at once unless --retune. Ctrl-C
stops the search and keeps the best so far."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from moetui.cli.argtypes import SECONDS_BUDGET
from moetui.cli.output import print_json, table
from moetui.cli.settings_args import add_settings_arguments, rig_for, settings_from_args
from moetui.config import RunConfig
from moetui.config.llama_flags import SETTINGS
from moetui.errors import ConfigError
from moetui.export import quoting
from moetui.hub.cache import local_model_file
from moetui.resolver.tuning import tune
from moetui.tuner.events import ProbeFinished, ProbesCompared, ProbeStarted, TuneProgress
from moetui.tuner.options import DIMENSIONS, OBJECTIVES, TuneOptions
from moetui.tuner.scoring import robust_spread
from moetui.tuner.store import ProfileStore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a local GGUF file")
    add_settings_arguments(p, rig_help="'auto' (this machine); a tune measures, so only a real rig makes sense")
    p.add_argument("--budget", type=SECONDS_BUDGET, default=300.0, metavar="SECONDS", help="time budget for probing (default 300)")
    p.add_argument("--objective", choices=OBJECTIVES, default="turn",
                   help="what to optimise: seconds per turn of the workload (turn, default), decode tok/s, "
                        "prompt tok/s (prefill), or tok/s over one request of -p and -n tokens (balanced)")
    p.add_argument("--retune", action="store_true", help="ignore the saved profile and tune again")
    p.add_argument("--dimensions", metavar="LIST", help=f"comma-separated subset of: {','.join(DIMENSIONS)}")
    p.add_argument("-p", "--n-prompt", type=int, default=None,
                   help="prompt tokens per pp measurement (default: the workload's, capped at 4096 and by the budget)")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="tokens per tg measurement (default 128)")
    p.add_argument("-r", "--reps", type=int, default=3, help="repetitions per probe, median taken (default 3, at least 3)")
    p.add_argument("--max-rounds", type=int, default=8,
                   help="side-by-side rounds a comparison may grow to while the figures overlap (default 8)")
    p.add_argument("--max-probes", type=int, default=None, help="stop after this many measured configs")
    p.add_argument("--save-config", metavar="FILE", help="also write the winning config to FILE (for `moetui run --config`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def options_from_args(args: argparse.Namespace):
    dims = tuple(d.strip() for d in args.dimensions.split(",") if d.strip()) if args.dimensions else None
    o = TuneOptions(settings_from_args(args), budget_s=args.budget, objective=args.objective,
                    n_prompt=args.n_prompt, n_gen=args.n_gen, reps=args.reps, dimensions=dims,
                    retune=args.retune, max_probes=args.max_probes, max_rounds=args.max_rounds)
    o.validate()
    return o


def _progress(quiet: bool):
    def on_event(ev: Any) -> None:
        if quiet:
            return
        if isinstance(ev, ProbeStarted):
            eta = f", ~{ev.eta_s:.0f} s left" if ev.eta_s is not None else ""
            print(f"[{ev.n_done + 1}] {ev.probe.label}{eta} ...", file=sys.stderr, flush=True)
        elif isinstance(ev, ProbeFinished):
            p = ev.probe
            if p.status == "ok":
                mark = "  *best*" if ev.best is p else ""
                print(f"    pp {_fig(p, 'pp')}  tg {_fig(p, 'tg')}  {_turn(p)}{mark}", file=sys.stderr, flush=True)
            else:
                print(f"    {p.status}: {p.error}", file=sys.stderr, flush=True)
        elif isinstance(ev, ProbesCompared):
            print(f"    {ev.decision.describe()}", file=sys.stderr, flush=True)
        elif isinstance(ev, TuneProgress):
            print(f"moetui: {ev.message}", file=sys.stderr, flush=True)

    return on_event


def _fig(p: Any, which: str) -> str:
    b = p.bench
    if b is None:
        return "-"
    xs = b.pp_tok_s if which == "pp" else b.tg_tok_s
    med = b.pp_median if which == "pp" else b.tg_median
    return f"{med:.1f} ± {robust_spread(xs):.1f}" if med is not None else "-"


def _turn(p: Any) -> str:
    return f"{p.turn_s:.2f} s/turn" if p is not None and p.turn_s is not None else "- s/turn"


def run(args: argparse.Namespace) -> int:
    args.model = local_model_file(args.model)  # a hub model from the HF cache; one not downloaded says so
    options = options_from_args(args)
    rig = rig_for(options.settings, measuring=True)
    store = ProfileStore()
    result = tune(args.model, rig, options, on_event=_progress(args.quiet or args.json), store=store)
    for w in store.warnings:
        print(f"moetui: warning: {w}", file=sys.stderr)
    if args.json:
        print_json(result.to_dict() | {"from_cache": result.from_cache})
    else:
        print_result(result)
    if args.save_config:  # after the result is shown: a full disk here loses nothing but this file
        try:
            result.best.config.save(args.save_config)
        except OSError as exc:
            raise ConfigError(f"{args.save_config}: the config could not be saved ({exc.strerror or exc})") from None
    return 0


def print_result(result: Any) -> None:
    b = result.best
    src = "saved profile" if result.from_cache else f"{len(result.probes)} probes in {result.elapsed_s:.0f} s, {result.stopped}"
    w = result.workload
    goal = f"{result.objective} for {w.describe()}" if w is not None else result.objective
    print(f"{result.model_path}: best for {goal} ({src})")
    print(f"  {b.label}: {_turn(b)}, pp {_fig(b, 'pp')} t/s, tg {_fig(b, 'tg')} t/s")
    if result.baseline is not None and result.baseline is result.plan_probe:
        print("  llama.cpp defaults: the same config as the plan")
    elif result.baseline is not None:
        print(f"  llama.cpp defaults: {_turn(result.baseline)}, pp {_fig(result.baseline, 'pp')} t/s, "
              f"tg {_fig(result.baseline, 'tg')} t/s")
    else:
        print("  llama.cpp defaults: not measured (they do not fit this rig's VRAM)")
    if result.plan_probe is not None:
        print(f"  untuned plan: {_turn(result.plan_probe)}, pp {_fig(result.plan_probe, 'pp')} t/s, "
              f"tg {_fig(result.plan_probe, 'tg')} t/s")
    pred = result.predicted
    if pred.get("decode_tps") is not None:
        print(f"  predicted (plan): pp {pred.get('prompt_tps') or 0:.1f} t/s, tg {pred['decode_tps']:.1f} t/s")
    print()
    rows = []
    for p in result.probes:
        mark = "*" if p is b else ""
        rows.append([f"{p.index}{mark}", p.label, p.status, "" if p.turn_s is None else f"{p.turn_s:.2f}",
                     _fig(p, "pp"), _fig(p, "tg"), "" if p.load_s is None else f"{p.load_s:.1f}",
                     "reload" if p.reloaded else "live", p.error or ""])
    print(table(rows, ["#", "config", "status", "s/turn", "pp t/s", "tg t/s", "load s", "", "error"]))
    print("(t/s: median ± robust spread over the repetitions; s/turn at the medians; * the winner)")
    if result.decisions:
        print()
        print("decisions (each candidate measured side by side with the config it would replace):")
        for d in result.decisions:
            print(f"- {d.describe()} [{d.rounds} rounds]")
    for note in result.notes:
        print(f"- {note}")
    c = b.config
    print()
    print("run it: " + quoting.join(["moetui", "run", c.model_path, *_flags(c)]))


def _flags(c: Any) -> list[str]:
    """`moetui run`'s flags for the winner: each setting away from llama.cpp's default, spelled as the table
    spells it (moetui.config.llama_flags), and the placement and the draft."""
    default = RunConfig(model_path=c.model_path)
    out: list[str] = []
    for s in SETTINGS:
        v = getattr(c, s.field)
        if s.field in ("n_parallel", "rpc_servers") or (v == getattr(default, s.field) and s.field != "n_ctx"):
            continue
        if s.kind == "switch":
            out.append(s.flag or s.long)
        else:
            out += [s.flag or s.long, ",".join(f"{x:g}" for x in v) if s.kind == "floats" else str(v)]
    for o in c.overrides:
        out += ["-ot", o.to_arg()]
    if c.draft is not None and c.draft.model_path:
        out += ["-md", c.draft.model_path, "--draft-max", str(c.draft.draft_max)]
    return out
