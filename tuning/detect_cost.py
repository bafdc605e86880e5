"""How long `moetui detect` takes and what one 2 Hz sampler tick costs, on this machine (issue 3).

Rerun from the repository root (writes tuning/results/detect_cost[-TAG].json):

    python3 tuning/detect_cost.py [--tag NAME] [--out-dir DIR]

- detect: wall time of the real CLI in a fresh process, cold (fresh cache dir: the RAM bandwidth probe
  runs) and warm (cached figure), 3 runs each, plus `--no-bandwidth`;
- sampler: mean and worst time of Sampler.sample() over 200 ticks with the real NVML binding (real GPUs
  where there are any, otherwise the no-driver path) and with a recorded H100 replayed as 8 GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moetui.hardware.fake_nvml import FakeNvml
from moetui.hardware.sampler import Sampler
from moetui.paths import atomic_write_json

FIX = REPO / "tests" / "fixtures" / "hardware"


def cli_wall(args: list[str], cache: str) -> float:
    env = dict(os.environ, MOETUI_CACHE_DIR=cache, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "moetui", "detect", *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return round(wall, 3)


def sampler_cost(s: Sampler, ticks: int = 200) -> dict[str, float]:
    s.sample()
    times = []
    for _ in range(ticks):
        t = time.perf_counter()
        s.sample()
        times.append(time.perf_counter() - t)
    return {"gpus": len(s.sample().gpus), "mean_ms": round(statistics.mean(times) * 1e3, 3),
            "p99_ms": round(sorted(times)[int(0.99 * len(times)) - 1] * 1e3, 3), "max_ms": round(max(times) * 1e3, 3),
            "cpu_share_at_2hz_pct": round(statistics.mean(times) * 2 * 100, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", default="")
    ap.add_argument("--out-dir", default=str(REPO / "tuning" / "results"))
    args = ap.parse_args()
    res: dict = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "command": "python3 tuning/detect_cost.py" + (f" --tag {args.tag}" if args.tag else ""),
                 "loadavg_1m_start": os.getloadavg()[0]}
    cold, warm, nobw = [], [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(cli_wall([], cache))
            warm.append(cli_wall([], cache))
            nobw.append(cli_wall(["--no-bandwidth", "--json"], cache))
    res["detect_wall_s"] = {"cold_probe": cold, "warm_cached": warm, "no_bandwidth_json": nobw}
    with Sampler() as s:
        res["sampler_real_nvml"] = {"error": s.error, **sampler_cost(s)}
    cap = json.loads((FIX / "nvml_h100_sxm.json").read_text())
    cap["devices"] = cap["devices"] * 8
    with Sampler(FakeNvml(cap)) as s:
        res["sampler_fake_8_gpus"] = sampler_cost(s)
    res["loadavg_1m_end"] = os.getloadavg()[0]
    out = Path(args.out_dir) / ("detect_cost" + (f"-{args.tag}" if args.tag else "") + ".json")
    atomic_write_json(out, res)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
