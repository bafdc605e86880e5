"""--no-host (llama_model_params.no_host), the setting added through moetui's one table of llama.cpp
settings: measured with llama.cpp's own llama-bench, --no-host 0 and 1 interleaved in one run, on the
exported llama-bench line of the plan for a tiny proxy (or MODEL). What it changes: weights the CPU computes
skip the GPU backend's pinned host buffer, so the CPU's extra (repacked) buffer types can hold them. On a
CPU-only build there is no GPU host buffer: the two must measure alike (no speed claim on this CPU); on a GPU
rig with experts in RAM (-ot exps=CPU) it is the GPU measurement that can show a difference.

    python3 tuning/no_host.py [--model PATH] [--rounds 5] [--reps 3] [--ot] [--out tuning/results]

--ot: keep every expert in RAM (-ot exps=CPU), where --no-host matters on a GPU build. Writes
no_host_<host>.json and .md under --out with the command it ran.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moetui.config import RunConfig  # noqa: E402
from moetui.export.commandline import export_command  # noqa: E402
from moetui.export.llama_tools import ensure_llama_tools  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a GGUF (default: a tiny Qwen3-30B-A3B-shaped proxy written here)")
    ap.add_argument("--reps", type=int, default=3, help="llama-bench repetitions per process")
    ap.add_argument("--rounds", type=int, default=5, help="processes per setting, alternating")
    ap.add_argument("--ot", action="store_true", help="every expert in RAM (-ot exps=CPU)")
    ap.add_argument("--out", default=str(ROOT / "tuning" / "results"))
    args = ap.parse_args()
    model = args.model or _proxy()
    bins = ensure_llama_tools()
    cfg = RunConfig(model_path=str(model), n_ctx=1024, n_threads=2, no_host=True)
    if args.ot:
        from moetui.config import TensorOverride
        from moetui.sizing.overrides import LLAMA_EXPS_REGEX

        cfg = cfg.replace(overrides=[TensorOverride(LLAMA_EXPS_REGEX, "CPU")])
    argv = export_command(cfg, "bench", binary=str(bins / "llama-server")).argv
    i = argv.index("--no-host")
    samples: dict[tuple[bool, str], list[float]] = {}
    for _ in range(args.rounds):  # 0 and 1 alternate, one process each: a busy machine's drift hits both
        for value in ("0", "1"):
            line = [*argv[:i + 1], value, *argv[i + 2:], "-r", str(args.reps), "-o", "json"]
            p = subprocess.run(line, capture_output=True, text=True, check=True)
            for r in json.loads(p.stdout):
                test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
                samples.setdefault((value == "1", test), []).extend(r["samples_ts"])
    out = [{"no_host": nh, "test": test, "median_ts": statistics.median(xs), "min_ts": min(xs), "max_ts": max(xs),
            "n": len(xs)} for (nh, test), xs in sorted(samples.items())]
    host = platform.node() or "host"
    result = {"command": " ".join(argv[:i + 1] + ["0|1", *argv[i + 2:], "-r", str(args.reps)]), "rounds": args.rounds,
              "model": str(model), "cpu": platform.processor() or platform.machine(),
              "rows": out}
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"no_host_{host}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# --no-host on {host} ({result['cpu']})", "", f"`{result['command']}`, {args.rounds} rounds "
             "alternating 0 and 1 (one process each)", "", "| no_host | test | median t/s | min | max | samples |",
             "|---|---|---|---|---|---|"]
    for r in out:
        lines.append(f"| {r['no_host']} | {r['test']} | {r['median_ts']:.1f} | {r['min_ts']:.1f} | {r['max_ts']:.1f} "
                     f"| {r['n']} |")
    lines += ["", "Rerun: `python3 tuning/no_host.py" + (f" --model {args.model}" if args.model else "")
              + (" --ot" if args.ot else "")
              + f" --rounds {args.rounds} --reps {args.reps}`"]
    (dest / f"no_host_{host}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _proxy() -> Path:
    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape, scaled

    path = Path(tempfile.gettempdir()) / "moetui-no-host-proxy.gguf"
    if not path.exists():
        write_proxy(scaled(load_shape("qwen3-30b-a3b"), "small"), path, "Q4_K_M")
    return path


if __name__ == "__main__":
    sys.exit(main())
