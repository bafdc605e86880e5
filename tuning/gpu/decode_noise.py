"""Where does llama-bench's decode noise on the lent GPU host come from: the spread inside one llama-bench
process (its repetitions) or between processes of the same line? And does pinning threads help?

Runs one exported line (a cell's variant, from its JSON) as separate llama-bench processes, interleaving
the extra flags given (A B A B ...), and prints each process's decode samples with the host's topology:

    python3 tuning/gpu/decode_noise.py tuning/results/speed_vs_fit/cell12_ctx32768.json "moetui tuned" \
        --gib 12 --procs 4 --extra "" --extra "--cpu-strict 1" --out $OUT/decode_noise.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tuning"))

from gpu_bench import VramCap, log  # noqa: E402
from speed_vs_fit import llama_bench  # noqa: E402


def topology() -> dict[str, str]:
    out = {}
    for name, cmd in (("lscpu", ["lscpu"]), ("nodes", ["sh", "-c", "ls /sys/devices/system/node | grep node"]),
                      ("affinity", ["sh", "-c", "taskset -p $$"])):
        try:
            out[name] = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except OSError as exc:
            out[name] = str(exc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cell_json")
    ap.add_argument("variant")
    ap.add_argument("--gib", type=float, required=True)
    ap.add_argument("--procs", type=int, default=4, help="llama-bench processes per extra-flag set")
    ap.add_argument("--extra", action="append", default=[], help="flags added to the line (one set each)")
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    args = json.loads(Path(a.cell_json).read_text())["variants"][a.variant]
    extras = a.extra or [""]
    topo = topology()
    log(topo["lscpu"])
    log("numa nodes:", topo["nodes"].split())
    samples: dict[str, list[list[float]]] = {e: [] for e in extras}
    with VramCap(a.gib):
        for i in range(a.procs):
            for e in (extras if i % 2 == 0 else extras[::-1]):
                rows = llama_bench([*args, *shlex.split(e), "-p", "0", "-n", str(a.n_gen), "-r", str(a.reps)])
                got = [s for r in rows for s in r.get("samples_ts", [])]
                samples[e].append(got)
    summary = {}
    for e, procs in samples.items():
        means = [statistics.fmean(p) for p in procs if p]
        summary[e or "(as exported)"] = {
            "process_means": [round(m, 1) for m in means],
            "between_processes_range": [round(min(means), 1), round(max(means), 1)] if means else None,
            "within_process_spread_max": round(max((max(p) - min(p)) for p in procs if p), 1) if means else None,
        }
    print(json.dumps(summary, indent=1))
    Path(a.out).write_text(json.dumps({"variant": a.variant, "args": args, "gib": a.gib, "samples": samples,
                                       "summary": summary, "topology": topo}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
