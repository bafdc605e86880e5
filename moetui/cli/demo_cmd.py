"""`moetui demo`: the whole product on any machine, with no GPU, model or network: detect the rig, build a
demo MoE proxy in the user data dir, inspect it, plan it, run it in the isolated worker, benchmark it,
then open the app on it (when the terminal is interactive)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from moetui.cli.output import human_bytes, print_json
from moetui.hardware import detect_rig
from moetui.hardware.detect import describe
from moetui.paths import data_dir
from moetui.runtime.client import DoneEvent, ErrorEvent, ModelWorker, TokenEvent

# gguf and textual: imported inside the functions that need them, to keep start-up fast

DEMO_SHAPE = "qwen3-30b-a3b"
DEMO_MIX = "Q4_K_M"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", choices=("tiny", "small"), default="tiny",
                   help="demo model size: tiny (~5 MB, instant) or small (~1 GB, realistic speeds)")
    p.add_argument("--no-tui", action="store_true", help="do not open the app at the end")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of prose (implies --no-tui)")


def demo_model_path(scale: str = "tiny") -> Path:
    return data_dir() / "models" / f"demo-{DEMO_SHAPE}-{scale}-{DEMO_MIX}.gguf"


def ensure_demo_model(scale: str = "tiny") -> Path:
    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape, scaled

    path = demo_model_path(scale)
    if not path.exists():
        write_proxy(scaled(load_shape(DEMO_SHAPE), scale), path, DEMO_MIX)
    return path


def run(args: argparse.Namespace) -> int:
    from moetui.model.inspect import inspect_file
    from moetui.sizing.plan import PlanOptions, plan

    say = (lambda *a, **k: None) if args.json else (lambda *a, **k: print(*a, **k, flush=True))
    summary: dict[str, Any] = {}

    say("== 1. Your rig")
    rig = detect_rig()
    say(describe(rig))
    summary["rig"] = rig.to_dict()

    say("\n== 2. A demo MoE model (a synthetic proxy with Qwen3-30B-A3B's structure, scaled down)")
    t0 = time.perf_counter()
    path = ensure_demo_model(args.scale)
    info = inspect_file(path)
    say(f"{path}\n{info.name}: {info.architecture}, {info.n_layers} layers, {info.n_expert} experts "
        f"({info.n_expert_used} used per token), {human_bytes(info.total_bytes)} of weights, "
        f"{human_bytes(info.active_bytes_per_token)} read per token ({time.perf_counter() - t0:.2f} s)")
    summary["model"] = {"path": str(path), "architecture": info.architecture, "bytes": info.total_bytes,
                        "active_bytes_per_token": info.active_bytes_per_token}

    say("\n== 3. The plan for this rig")
    p = plan(info, rig, PlanOptions(n_ctx=2048))
    for line in p.explanation:
        say(f"- {line}")
    summary["plan"] = {"config": p.config.to_dict(), "predicted_decode_tok_s": p.decode_tps,
                       "predicted_prompt_tok_s": p.prompt_tps}

    say("\n== 4. Running it (llama.cpp in an isolated worker process)")
    with ModelWorker() as worker:
        load = worker.start(p.config)
        say(f"loaded in {load.load_s:.2f} s; prompt: 'Explain mixture-of-experts in one line.'\n> ", end="")
        done: DoneEvent | None = None
        for ev in worker.chat([{"role": "user", "content": "Explain mixture-of-experts in one line."}], max_tokens=32):
            if isinstance(ev, TokenEvent):
                say(ev.text, end="")
            elif isinstance(ev, DoneEvent):
                done = ev
            elif isinstance(ev, ErrorEvent):
                raise ev.error
        say("\n(random weights: the words are noise, the speed is real)")
        if done is not None:
            say(f"decode {done.stats.decode_tok_s_avg or 0:.1f} tok/s over {done.stats.tokens} tokens")
        bench = worker.bench(n_prompt=128, n_gen=32, reps=3)
        say(f"bench: pp128 {bench.pp_median:.1f} tok/s, tg32 {bench.tg_median:.1f} tok/s (median of 3); "
            f"predicted decode {p.decode_tps:.1f} tok/s")
        summary["bench"] = {"pp_tok_s": bench.pp_median, "tg_tok_s": bench.tg_median}

    if args.json:
        print_json(summary)
        return 0
    if args.no_tui or not sys.stdout.isatty() or not sys.stdin.isatty():
        say("\nNext: `moetui` opens the app; `moetui plan/tune/export MODEL` work on any GGUF; "
            f"`moetui proxy --list` shows real models to try before you download.")
        return 0
    from moetui.ui.app import run_app

    run_app(str(path))
    return 0
