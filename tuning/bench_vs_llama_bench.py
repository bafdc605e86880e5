"""`moetui bench` beside llama.cpp's own `llama-bench`, same model and settings, run alternately in one go.

The proxy is a Qwen3-30B-A3B-shaped model scaled to "small" (a few hundred MB); llama-bench is the one
moetui builds from the sources llama-cpp-python vendors (moetui.export.llama_tools). Prints the ratios and
writes tuning/results/bench_vs_llama_bench.{json,md}.

    python3 tuning/bench_vs_llama_bench.py [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from moetui.export.llama_tools import ensure_llama_tools  # noqa: E402
from moetui.model.proxy import write_proxy  # noqa: E402
from moetui.model.shapes import load_shape, scaled  # noqa: E402
from moetui.hardware.repack import repack_safe  # noqa: E402
from moetui.paths import cache_dir  # noqa: E402


def moetui_bench(model: Path, a: argparse.Namespace) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-m", "moetui", "bench", str(model), "-t", str(a.threads), "-tb",
                          str(a.threads), "-p", "512", "-n", "128", "-r", str(a.reps), "-c", "1024", "-b", "2048", "-ub", "512", "--json"],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    d = d.get("bench", d)
    return statistics.median(d["pp_tok_s"]), statistics.median(d["tg_tok_s"])


def llama_bench(bin_dir: Path, model: Path, a: argparse.Namespace) -> tuple[float, float]:
    out = subprocess.run([str(bin_dir / "llama-bench"), "-m", str(model), "-t", str(a.threads), "-p", "512",
                          "-n", "128", "-r", str(a.reps), "-o", "json", "--repack", "1" if a.repack else "0"],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] and not r["n_gen"])
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] and not r["n_prompt"])
    return pp, tg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    # moetui's worker turns repacking off where it crashes (moetui.hardware.repack): llama-bench must match
    a.repack = repack_safe().safe
    model = cache_dir() / "bench-proxy-qwen3-30b-a3b-small-Q4_K_M.gguf"
    if not model.exists():
        write_proxy(scaled(load_shape("qwen3-30b-a3b"), "small"), model, "Q4_K_M")
    bin_dir = ensure_llama_tools()
    rows = []
    for i in range(a.rounds):  # alternate, so a busy moment on the machine hits both sides
        m = moetui_bench(model, a)
        ll = llama_bench(bin_dir, model, a)
        rows.append({"round": i, "moetui_pp": m[0], "moetui_tg": m[1], "llama_pp": ll[0], "llama_tg": ll[1]})
        print(f"round {i}: moetui pp512 {m[0]:.1f} tg128 {m[1]:.1f} | llama-bench pp512 {ll[0]:.1f} tg128 {ll[1]:.1f}",
              flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in ("moetui_pp", "moetui_tg", "llama_pp", "llama_tg")}
    res = {"model": str(model), "model_bytes": model.stat().st_size, "threads": a.threads, "reps": a.reps, "repack": a.repack,
           "rounds": rows, "median": med, "pp_ratio": med["moetui_pp"] / med["llama_pp"],
           "tg_ratio": med["moetui_tg"] / med["llama_tg"]}
    (HERE / "results/bench_vs_llama_bench.json").write_text(json.dumps(res, indent=1))
    md = ["# `moetui bench` vs `llama-bench` (same proxy, same settings, alternating rounds)", "",
          f"Model: Qwen3-30B-A3B-shaped proxy scaled to 'small' ({res['model_bytes'] / 2**20:.0f} MiB), "
          f"{a.threads} thread(s), {a.reps} repetitions per run, {a.rounds} rounds, weight repacking "
          f"{'on' if a.repack else 'off on both sides (this CPU traps in AMX kernels)'}.", "",
          "| round | moetui pp512 | llama-bench pp512 | moetui tg128 | llama-bench tg128 |", "|---|---|---|---|---|"]
    md += [f"| {r['round']} | {r['moetui_pp']:.1f} | {r['llama_pp']:.1f} | {r['moetui_tg']:.1f} | {r['llama_tg']:.1f} |"
           for r in rows]
    md += ["", f"Median ratio moetui / llama-bench: pp512 {res['pp_ratio']:.3f}, tg128 {res['tg_ratio']:.3f}.", "",
           f"Rerun: `python3 tuning/bench_vs_llama_bench.py --threads {a.threads} --rounds {a.rounds} --reps {a.reps}`."]
    (HERE / "results/bench_vs_llama_bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
