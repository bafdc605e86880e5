"""What a client of `moetui serve` gets, timed by the official `openai` client (issue #29's benchmark).

    python3 tuning/serve_vs_bench.py cpu --rounds 5 --out tuning/results/serve_vs_bench

  CPU (this machine): one chat turn (a prompt of --n-prompt tokens, a reply of --n-gen tokens, EOS ignored, no
  prompt cache) through `moetui serve` against llama-bench of the same exported line, interleaved rounds:
  llama-bench's pp at depth 0 and its tg at the prompt's depth (`-d`), the very positions the turn decodes at.
  Client prompt tok/s = prompt tokens / time to the first streamed chunk (the first reply token); decode tok/s =
  (reply tokens - 1) / (last chunk - first chunk). Target: within 10%.

    source tuning/gpu/setup.sh   # with MOETUI_GPU_SERVER=1: a CUDA llama-server beside llama-bench
    python3 tuning/serve_vs_bench.py gpu --model /tmp/moetui-gpu/qwen3-30b-a3b-Q4_K_M.gguf --bin $MOETUI_GPU_BIN \
        --gib 12 --out $OUT/serve_vs_fit

  GPU (unattended; VRAM capped by tuning/gpu/vram_hold.py): `moetui serve` (the config in force: the plan for
  the context, or --config FILE, e.g. a tuned cell's config) against `llama-server --fit on` with llama.cpp's
  defaults otherwise, same model, cap and context, one server at a time, order alternating per round:
  (a) one chat turn of --n-prompt (2048) new tokens at --depth (8192) tokens already in the slot's cache
  (a first request puts them there, untimed), reply --n-gen (256), timed by the client from send to last
  token: target <= 0.9x llama.cpp's time; (b) --clients (4) concurrent chat turns (512-token prompts, 256-token
  replies): total decode tok/s over the span from the first reply token to the last, `moetui serve --parallel
  4` (the same total KV as llama.cpp's unified 4-slot pool) against llama-server's default slots.
Writes serve_vs_bench.json and README.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from exported_lines import bench_line, small_proxy  # noqa: E402

from moetui.config import RunConfig  # noqa: E402
from moetui.export.serving import free_port  # noqa: E402


def log(*a: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


class Served:
    """A server (`moetui serve` or a plain llama-server) up until the context exits; .url, .model, .key."""

    def __init__(self, argv: list[str], moetui: bool, log_path: Path, port: int | None = None) -> None:
        self.argv, self.moetui, self.log_path, self.port = argv, moetui, log_path, port
        self.url = self.model = ""
        self.key = "none"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "Served":
        with open(self.log_path, "a") as fh:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE if self.moetui else fh, stderr=fh, text=True)
        if self.moetui:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:  # JSON lines: wait for "ready" (it waited for /health)
                ev = json.loads(line)
                if ev["event"] == "ready":
                    self.url, self.model = ev["base_url"], ev["model"]
                    threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep the pipe drained
                    return self
            raise RuntimeError(f"moetui serve ended: {self.log_path.read_text(errors='replace')[-1500:]}")
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {self.log_path.read_text(errors='replace')[-1500:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        self.url, self.model = base + "/v1", "default"
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError("llama-server not ready in 900 s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2 if self.moetui else 15)  # moetui serve: Ctrl+C, it stops its server
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def words(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(("alpha", "river", "stone", "cloud", "seven", "green", "lamp", "music")) for _ in range(n))


def chat_turn(url: str, model: str, key: str, content: str, n_gen: int, cache: bool = False,
              history: list[dict[str, str]] | None = None) -> dict[str, float]:
    """One streamed chat turn timed by the openai client: prompt tokens, reply tokens, send -> first token,
    first -> last token."""
    import openai

    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=1800)
    t0 = time.perf_counter()
    first = last = None
    usage = None
    stream = client.chat.completions.create(
        model=model, messages=[*(history or []), {"role": "user", "content": content}], max_tokens=n_gen,
        stream=True, stream_options={"include_usage": True}, temperature=0,
        extra_body={"ignore_eos": True, "cache_prompt": cache})
    for chunk in stream:
        # every token comes as a chunk, with or without text (a random-weight proxy's byte pieces wait for the
        # rest of their character): time the chunks, not the text, or the decode looks bunched
        if chunk.choices:
            now = time.perf_counter()
            first = first or now
            last = now
        if chunk.usage is not None:
            usage = chunk.usage
    t_end = time.perf_counter()
    assert usage is not None and first is not None and last is not None
    return {"prompt_tokens": usage.prompt_tokens, "reply_tokens": usage.completion_tokens, "ttft_s": first - t0,
            "decode_s": last - first, "total_s": t_end - t0, "t_first": first, "t_last": last}


# ---- CPU: moetui serve vs llama-bench of the same exported line -----------------------------------------
def cpu_config(a: argparse.Namespace, model: Path) -> RunConfig:
    if a.config:
        return RunConfig.load(a.config).replace(model_path=str(model))
    from moetui.hardware import detect_rig
    from moetui.model.inspect import inspect_file
    from moetui.sizing.plan import PlanOptions, plan

    return plan(inspect_file(model), detect_rig(), PlanOptions(n_ctx=a.ctx, model_path=str(model))).config


def llama_bench_turn(line: list[str], n_prompt: int, n_gen: int, reps: int) -> dict[str, list[float]]:
    """llama-bench's prompt speed at depth 0 and its decode speed at the prompt's depth: where the turn runs."""
    out: dict[str, list[float]] = {}
    for key, test in (("pp", ["-p", str(n_prompt), "-n", "0"]), ("tg", ["-p", "0", "-n", str(n_gen), "-d", str(n_prompt)])):
        r = subprocess.run([*line, *test, "-r", str(reps), "-o", "json"], capture_output=True, text=True, timeout=1800)
        if r.returncode:
            raise RuntimeError(f"llama-bench failed ({r.returncode}): {r.stderr[-1500:]}")
        out[key] = [float(v) for v in json.loads(r.stdout)[0]["samples_ts"]]
    return out


def run_cpu(a: argparse.Namespace) -> dict[str, Any]:
    from moetui.export.llama_tools import ensure_llama_tools

    bin_dir = Path(a.bin) if a.bin else ensure_llama_tools(["llama-bench", "llama-server"])
    model = Path(a.model) if a.model else small_proxy()
    cfg = cpu_config(a, model)
    cfg_path = a.out / "config.json"
    cfg.save(cfg_path)
    line = bench_line(cfg, bin_dir)
    serve = [sys.executable, "-m", "moetui", "serve", str(model), "--config", str(cfg_path), "--json",
             "--binary", str(bin_dir / "llama-server")]
    samples: dict[str, dict[str, list[float]]] = {"moetui serve (openai client)": {"pp": [], "tg": []},
                                                  "llama-bench (exported line)": {"pp": [], "tg": []}}
    with Served(serve, True, a.out / "serve.log") as srv:
        chat_turn(srv.url, srv.model, srv.key, words(16, 0), 4)  # warm-up, as llama-bench runs one
        probe = chat_turn(srv.url, srv.model, srv.key, words(a.n_prompt, 1), 2)
        per_word = probe["prompt_tokens"] / a.n_prompt
        n_words = int(a.n_prompt / per_word)
        n_prompt = None
        for rnd in range(a.rounds):
            order = ["serve", "bench"] if rnd % 2 == 0 else ["bench", "serve"]
            for side in order:
                if side == "serve":
                    for rep in range(a.reps):
                        t = chat_turn(srv.url, srv.model, srv.key, words(n_words, 100 * rnd + rep + 2), a.n_gen)
                        n_prompt = n_prompt or int(t["prompt_tokens"])
                        assert t["reply_tokens"] == a.n_gen, t
                        s = samples["moetui serve (openai client)"]
                        s["pp"].append(t["prompt_tokens"] / t["ttft_s"])
                        s["tg"].append((t["reply_tokens"] - 1) / t["decode_s"])
                else:
                    b = llama_bench_turn(line, n_prompt or a.n_prompt, a.n_gen, a.reps)
                    for k in ("pp", "tg"):
                        samples["llama-bench (exported line)"][k] += b[k]
                log(f"round {rnd + 1} {side} done")
    med = {side: {k: statistics.median(v) for k, v in s.items()} for side, s in samples.items()}
    ref = med["llama-bench (exported line)"]
    got = med["moetui serve (openai client)"]
    ratio = {k: round(got[k] / ref[k], 3) for k in ("pp", "tg")}
    # the same round's samples side by side: what a load that drifts between rounds does to both sides cancels
    s_srv, s_ref = samples["moetui serve (openai client)"], samples["llama-bench (exported line)"]
    paired = {k: round(statistics.median(a / b for a, b in zip(s_srv[k], s_ref[k])), 3) for k in ("pp", "tg")}
    return {"mode": "cpu", "model": str(model), "config": cfg.to_dict(), "n_prompt": n_prompt, "n_gen": a.n_gen,
            "rounds": a.rounds, "reps": a.reps, "bench_line": shlex.join(line), "samples": samples, "median": med,
            "serve_over_bench": ratio, "serve_over_bench_paired": paired,
            "within_10pct": all(abs(r - 1) <= 0.10 for r in ratio.values())}


# ---- GPU: moetui serve vs llama-server --fit on --------------------------------------------------------
def tokens_per_word(srv: Served) -> float:
    probe = chat_turn(srv.url, srv.model, srv.key, words(100, 7), 1)  # small: it must fit one slot of four
    return probe["prompt_tokens"] / 100


def deep_turn(srv: Served, a: argparse.Namespace, seed: int, per_word: float) -> dict[str, float]:
    """--n-prompt new tokens at --depth tokens already in the cache: a first (untimed) turn puts the depth there."""
    history = words(int(a.depth / per_word), seed)
    chat_turn(srv.url, srv.model, srv.key, history, 1, cache=True)
    return chat_turn(srv.url, srv.model, srv.key, words(int(a.n_prompt / per_word), seed + 1), a.n_gen, cache=True,
                     history=[{"role": "user", "content": history}, {"role": "assistant", "content": "ok"}])


def concurrent(srv: Served, a: argparse.Namespace, seed: int, per_word: float) -> dict[str, float]:
    results: list[dict[str, float]] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results.append(chat_turn(srv.url, srv.model, srv.key, words(int(512 / per_word), seed + i), a.n_gen))
        except Exception as exc:  # noqa: BLE001 - said below, for the whole set
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {a.clients} concurrent turns failed: {errors[0]}")
    span = max(r["t_last"] for r in results) - min(r["t_first"] for r in results)
    return {"total_decode_tok_s": sum(r["reply_tokens"] for r in results) / span, "clients": len(results)}


def run_gpu(a: argparse.Namespace) -> dict[str, Any]:
    from gpu_bench import VramCap

    bin_dir = Path(a.bin)
    ctx = a.depth + a.n_prompt + a.n_gen + 1024
    base = [sys.executable, "-m", "moetui", "serve", a.model, "--json", "--binary", str(bin_dir / "llama-server"),
            "--untuned"] + (["--config", a.config] if a.config else [])
    sides = {
        "moetui serve": lambda p: Served([*base, "-c", str(ctx)], True, a.out / "moetui.log"),
        "moetui serve --parallel 4": lambda p: Served([*base, "-c", str(ctx // a.clients), "--parallel",
                                                       str(a.clients)], True, a.out / "moetui-np.log"),
        "llama-server --fit on": lambda p: Served([str(bin_dir / "llama-server"), "-m", a.model, "--fit", "on",
                                                   "-c", str(ctx), "--port", str(p)], False, a.out / "fit.log", p),
    }
    out: dict[str, Any] = {"mode": "gpu", "model": a.model, "gib": a.gib, "ctx": ctx, "depth": a.depth,
                           "n_prompt": a.n_prompt, "n_gen": a.n_gen, "clients": a.clients, "turn": {}, "concurrent": {}}
    cap = VramCap(a.gib) if a.gib else nullcontext()
    with cap:
        for rnd in range(a.rounds):
            names = list(sides) if rnd % 2 == 0 else list(reversed(sides))
            for name in names:
                with sides[name](free_port("127.0.0.1")) as srv:
                    per_word = tokens_per_word(srv)
                    if name != "moetui serve --parallel 4":
                        t = deep_turn(srv, a, 1000 * rnd, per_word)
                        out["turn"].setdefault(name, []).append(t)
                        log(f"round {rnd + 1} {name}: turn {t['total_s']:.2f} s ({t['prompt_tokens']} prompt tokens)")
                    if name != "moetui serve":
                        c = concurrent(srv, a, 1000 * rnd + 500, per_word)
                        out["concurrent"].setdefault(name, []).append(c)
                        log(f"round {rnd + 1} {name}: {a.clients} clients {c['total_decode_tok_s']:.1f} tok/s")
                (a.out / "serve_vs_bench.json").write_text(json.dumps(out, indent=2))
    t_moe = statistics.median(x["total_s"] for x in out["turn"]["moetui serve"])
    t_fit = statistics.median(x["total_s"] for x in out["turn"]["llama-server --fit on"])
    c_moe = statistics.median(x["total_decode_tok_s"] for x in out["concurrent"]["moetui serve --parallel 4"])
    c_fit = statistics.median(x["total_decode_tok_s"] for x in out["concurrent"]["llama-server --fit on"])
    out["summary"] = {"turn_s": {"moetui": t_moe, "fit": t_fit, "ratio": round(t_moe / t_fit, 3),
                                 "target_met": t_moe / t_fit <= 0.9},
                      "concurrent_decode_tok_s": {"moetui": c_moe, "fit": c_fit, "ratio": round(c_moe / c_fit, 3)}}
    return out


def report(res: dict[str, Any], command: str) -> str:
    lines = ["# `moetui serve`, timed by the openai client", "", f"Rerun: `{command}`", "",
             f"Machine: {platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    if res["mode"] == "cpu":
        lines += [f"Model `{Path(res['model']).name}`; one chat turn of {res['n_prompt']} prompt tokens and "
                  f"{res['n_gen']} reply tokens; {res['rounds']} interleaved rounds x {res['reps']} repetitions a side.",
                  "", "| side | prompt tok/s (median) | decode tok/s (median) | prompt range | decode range |",
                  "|---|---|---|---|---|"]
        for side, s in res["samples"].items():
            m = res["median"][side]
            lines.append(f"| {side} | {m['pp']:.1f} | {m['tg']:.2f} | {min(s['pp']):.1f}-{max(s['pp']):.1f} | "
                         f"{min(s['tg']):.2f}-{max(s['tg']):.2f} |")
        r, pr = res["serve_over_bench"], res["serve_over_bench_paired"]
        lines += ["", f"Served / llama-bench: prompt {r['pp']:.3f}x, decode {r['tg']:.3f}x "
                  f"({'within' if res['within_10pct'] else 'NOT within'} 10%); median of the rounds' own ratios "
                  f"(reps 1: each serve sample against the same round's llama-bench sample): prompt {pr['pp']:.3f}x, "
                  f"decode {pr['tg']:.3f}x.", "",
                  f"llama-bench line: `{res['bench_line']}` plus `-p N -n 0` and `-p 0 -n G -d N`."]
    else:
        s = res["summary"]
        lines += [f"Model `{res['model']}`, VRAM cap {res['gib']} GiB, context {res['ctx']}.", "",
                  f"- chat turn ({res['n_prompt']} new tokens at depth {res['depth']}, {res['n_gen']}-token reply): "
                  f"moetui {s['turn_s']['moetui']:.2f} s, llama-server --fit on {s['turn_s']['fit']:.2f} s: "
                  f"{s['turn_s']['ratio']:.3f}x (target <= 0.9x: {'met' if s['turn_s']['target_met'] else 'NOT met'})",
                  f"- {res['clients']} concurrent clients, total decode: moetui --parallel {res['clients']} "
                  f"{s['concurrent_decode_tok_s']['moetui']:.1f} tok/s, fit {s['concurrent_decode_tok_s']['fit']:.1f} "
                  f"tok/s: {s['concurrent_decode_tok_s']['ratio']:.3f}x"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("cpu", "gpu"))
    ap.add_argument("--model", help="GGUF (cpu default: a small Qwen3-30B-A3B-shaped proxy)")
    ap.add_argument("--config", help="a RunConfig JSON to serve (default: moetui's plan)")
    ap.add_argument("--bin", help="folder with llama-server and llama-bench (default: moetui's build)")
    ap.add_argument("--gib", type=float, default=0, help="gpu: VRAM cap (tuning/gpu/vram_hold.py)")
    ap.add_argument("--ctx", type=int, default=2048, help="cpu: planned context")
    ap.add_argument("--n-prompt", type=int, default=None, help="prompt tokens (cpu 256, gpu 2048)")
    ap.add_argument("--n-gen", type=int, default=None, help="reply tokens (cpu 64, gpu 256)")
    ap.add_argument("--depth", type=int, default=8192, help="gpu: tokens already in the cache")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.n_prompt = a.n_prompt or (256 if a.mode == "cpu" else 2048)
    a.n_gen = a.n_gen or (64 if a.mode == "cpu" else 256)
    a.out.mkdir(parents=True, exist_ok=True)
    res = run_cpu(a) if a.mode == "cpu" else run_gpu(a)
    command = "python3 tuning/serve_vs_bench.py " + shlex.join(sys.argv[1:])
    res["command"] = command
    (a.out / "serve_vs_bench.json").write_text(json.dumps(res, indent=2))
    (a.out / "README.md").write_text(report(res, command))
    print(report(res, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
