"""Do the lines moetui exports run at the speed moetui measured? One config, three ways, interleaved in one run:
moetui's own worker (what the tuner measures, llama-cpp-python), llama.cpp's `llama-bench` from
`moetui export --tool bench`, and `llama-server` from `moetui export --tool server` (its own timings of a
request of the same prompt and reply lengths). Issue #17: "llama-bench and llama-server run from the exported
lines reproduce the tuned figures within 10%".

    python3 tuning/exported_lines.py --out tuning/results/exported_lines            # CPU: a small proxy, planned here
    python3 tuning/exported_lines.py --from-cell CELL.json --model M --gib 12 --out $OUT   # a GPU cell's tuned config

The config: a cell's tuned config (`--from-cell`, tuning/speed_vs_fit.py), a RunConfig JSON (`--config`), or
moetui's plan for the model on this rig. Binaries: `--bin` (a CUDA build), else the ones moetui builds from the
vendored sources. Writes exported_lines.json and README.md under --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from moetui.config import RunConfig  # noqa: E402
from moetui.export.commandline import export_command  # noqa: E402

TEST_SIZE_FLAGS = ("-m", "-p", "-n", "-o", "-r")


def small_proxy() -> Path:
    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape, scaled
    from moetui.paths import cache_dir

    model = cache_dir() / "bench-proxy-qwen3-30b-a3b-small-Q4_K_M.gguf"
    if not model.exists():
        write_proxy(scaled(load_shape("qwen3-30b-a3b"), "small"), model, "Q4_K_M")
    return model


def config_for(a: argparse.Namespace, model: Path) -> RunConfig:
    if a.from_cell:
        return RunConfig.from_dict(json.loads(Path(a.from_cell).read_text())["tune"]["config"]).replace(
            model_path=str(model))
    if a.config:
        return RunConfig.from_dict(json.loads(Path(a.config).read_text())).replace(model_path=str(model))
    from moetui.hardware import detect_rig
    from moetui.model.inspect import inspect_file
    from moetui.sizing.plan import PlanOptions, plan

    return plan(inspect_file(model), detect_rig(), PlanOptions(n_ctx=a.ctx, model_path=str(model))).config


def bench_line(cfg: RunConfig, bin_dir: Path) -> list[str]:
    """The exported llama-bench line without its test sizes (set here the same for every side)."""
    argv = export_command(cfg, "bench", binary=str(bin_dir / "llama-bench")).argv
    out, i = [argv[0], "-m", cfg.model_path], 1
    while i < len(argv):
        if argv[i] in TEST_SIZE_FLAGS:
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def run_llama_bench(line: list[str], a: argparse.Namespace) -> dict[str, list[float]]:
    r = subprocess.run([*line, "-p", str(a.n_prompt), "-n", str(a.n_gen), "-r", str(a.reps), "-o", "json"],
                       capture_output=True, text=True, timeout=900)
    if r.returncode:
        raise RuntimeError(f"llama-bench failed ({r.returncode}): {r.stderr[-1500:]}")
    rows = json.loads(r.stdout)
    pp = next(x["samples_ts"] for x in rows if x["n_prompt"] and not x["n_gen"])
    tg = next(x["samples_ts"] for x in rows if x["n_gen"] and not x["n_prompt"])
    return {"pp": [float(v) for v in pp], "tg": [float(v) for v in tg]}


def _post(url: str, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def run_llama_server(cfg: RunConfig, bin_dir: Path, a: argparse.Namespace, log: Path) -> dict[str, list[float]]:
    """The exported server line up, one warm-up request, then `reps` times: a request of exactly n_prompt prompt
    tokens (no prompt cache) and one of n_gen reply tokens (EOS ignored); the server's own timings of each."""
    line = export_command(cfg, "server", binary=str(bin_dir / "llama-server")).argv
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*line, "--host", "127.0.0.1", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited {proc.returncode}: {log.read_text(errors='replace')[-1500:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not become healthy in 600 s")
            time.sleep(0.5)
        words = " ".join(f"word{i % 97} and" for i in range(a.n_prompt))
        tokens = _post(base + "/tokenize", {"content": words})["tokens"][:a.n_prompt]
        # as llama-bench's tests: the prompt alone (one reply token), and the reply from an (all but) empty
        # cache; a reply after the whole prompt would also read its KV (on this 2-core CPU 22% slower)
        prompt = {"prompt": tokens, "n_predict": 1, "cache_prompt": False, "temperature": 0}
        reply = {"prompt": tokens[:1], "n_predict": a.n_gen, "ignore_eos": True, "cache_prompt": False, "temperature": 0}
        _post(base + "/completion", {**prompt, "n_predict": 4})  # warm-up, as llama-bench runs one
        pp, tg = [], []
        for _ in range(a.reps):
            t = _post(base + "/completion", prompt)["timings"]
            u = _post(base + "/completion", reply)["timings"]
            if t["prompt_n"] != len(tokens) or u["predicted_n"] != a.n_gen:
                raise RuntimeError(f"the server did not run the whole request: {t} {u}")
            pp.append(float(t["prompt_per_second"]))
            tg.append(float(u["predicted_per_second"]))
        return {"pp": pp, "tg": tg}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_worker(cfg: RunConfig, a: argparse.Namespace) -> dict[str, list[float]]:
    from moetui.runtime.client import ModelWorker

    with ModelWorker() as w:
        w.start(cfg)
        b = w.bench(n_prompt=a.n_prompt, n_gen=a.n_gen, reps=a.reps)
        return {"pp": list(b.pp_tok_s), "tg": list(b.tg_tok_s)}


def summarise(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    med = {side: {k: statistics.median(v) for k, v in s.items() if v} for side, s in samples.items()}
    rng = {side: {k: [min(v), max(v)] for k, v in s.items() if v} for side, s in samples.items()}
    ref = med.get("moetui worker", {})
    ratios = {side: {k: round(m[k] / ref[k], 3) for k in m if ref.get(k)} for side, m in med.items()
              if side != "moetui worker"}
    return {"median": med, "range": rng, "over_worker": ratios}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="default: a small Qwen3-30B-A3B-shaped proxy (written once)")
    ap.add_argument("--from-cell", help="a speed_vs_fit cell JSON: bench its tuned config")
    ap.add_argument("--config", help="a RunConfig JSON")
    ap.add_argument("--ctx", type=int, default=4096, help="context of the plan (without --from-cell/--config)")
    ap.add_argument("--bin", type=Path, help="folder with llama-bench and llama-server (default: moetui's build)")
    ap.add_argument("--gib", type=float, help="cap usable VRAM at this many GiB (tuning/gpu_bench.py VramCap)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    model = a.model or small_proxy()
    cfg = config_for(a, model)
    if a.bin:
        bin_dir = a.bin
    else:
        from moetui.export.llama_tools import ensure_llama_tools

        bin_dir = ensure_llama_tools(["llama-bench", "llama-server"])
    line = bench_line(cfg, bin_dir)
    server_line = export_command(cfg, "server", binary=str(bin_dir / "llama-server")).argv
    sides = {"moetui worker": lambda: run_worker(cfg, a), "llama-bench (exported line)": lambda: run_llama_bench(line, a),
             "llama-server (exported line)": lambda: run_llama_server(cfg, bin_dir, a, a.out / "server.log")}
    samples: dict[str, dict[str, list[float]]] = {s: {"pp": [], "tg": []} for s in sides}
    rounds: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if a.gib:
        from gpu_bench import VramCap
        cap: Any = VramCap(a.gib)
    else:
        cap = nullcontext()
    with cap:
        for rnd in range(a.rounds):  # A B C, then C B A: a drift hits every side alike
            names = list(sides) if rnd % 2 == 0 else list(sides)[::-1]
            for name in names:
                got = sides[name]()
                for k in ("pp", "tg"):
                    samples[name][k] += got[k]
                rounds.append({"round": rnd, "side": name, **got})
                print(f"round {rnd} {name}: pp{a.n_prompt} {statistics.median(got['pp']):.1f} "
                      f"tg{a.n_gen} {statistics.median(got['tg']):.1f} tok/s", flush=True)
    summ = summarise(samples)
    res = {"model": str(model), "model_bytes": model.stat().st_size, "config": cfg.to_dict(),
           "bench_line": shlex.join(line), "server_line": shlex.join(server_line), "n_prompt": a.n_prompt,
           "n_gen": a.n_gen, "reps": a.reps, "rounds": rounds, "seconds": round(time.perf_counter() - t0, 1), **summ,
           "command": "python3 tuning/exported_lines.py " + shlex.join(sys.argv[1:])}
    (a.out / "exported_lines.json").write_text(json.dumps(res, indent=1))
    md = ["# moetui's exported llama-bench and llama-server lines against moetui's own worker", "",
          f"Rerun: `{res['command']}` ({res['seconds']:.0f} s). Model: `{Path(res['model']).name}` "
          f"({res['model_bytes'] / 2**20:.0f} MiB); {a.rounds} rounds interleaved (A B C, C B A), {a.reps} "
          f"repetitions a side a round, prompt {a.n_prompt} tokens, reply {a.n_gen} tokens; llama-server's figures "
          "are its own timings of a request of the prompt and one of the reply from a one-token prompt (prompt "
          "cache off, EOS ignored), as llama-bench's pp and tg tests run from an empty cache.", "",
          f"- bench line: `{res['bench_line']}`", f"- server line: `{res['server_line']}`", "",
          "| side | prompt tok/s median (min-max) | decode tok/s median (min-max) | over the worker: prompt | decode |",
          "|---|---|---|---|---|"]
    for side in sides:
        m, r, o = summ["median"][side], summ["range"][side], summ["over_worker"].get(side, {"pp": 1.0, "tg": 1.0})
        md.append(f"| {side} | {m['pp']:.1f} ({r['pp'][0]:.1f}-{r['pp'][1]:.1f}) | {m['tg']:.2f} "
                  f"({r['tg'][0]:.2f}-{r['tg'][1]:.2f}) | {o['pp']} | {o['tg']} |")
    (a.out / "README.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
