"""Put moetui's RAM bandwidth probe beside independent measurements taken side by side (issue 3).

Rerun from the repository root (writes tuning/results/ram_bandwidth-TAG.{json,md} and rebuilds the
side-by-side tuning/results/ram_bandwidth.{json,md} from every ram_bandwidth-*.json there; TAG defaults
to "local", e.g. --tag h100 on the GPU machine):

    python3 tuning/ram_bandwidth_check.py [--repeats 5] [--tag NAME]

Each round runs, back to back, so they share the machine's momentary load:
  - moetui: moetui.hardware.bandwidth.measure_ram_bandwidth exactly as `moetui detect` runs it (<= 1 s,
    one thread per physical core, working set >= 4x L3), uncached;
  - numpy-long: the same kind of traffic written independently of moetui's code (copyto, and an
    integer OR-reduce instead of max() for reading), with larger buffers
    (1 GiB per thread where RAM allows) and 2 s per phase, to show that the short probe is not flattered
    by caches or by its short window;
  - moetui-long: moetui's probe code with numpy-long's buffers and a 2 s window per phase, and numpy-long's
    read with max() as well: together they say whether a gap comes from the short window or the kernel;
  - numpy-1t: one thread, 1 GiB: what a single core streams;
  - sysbench memory read / write (C, pthreads; Debian's sysbench 1.0.20), one thread per physical core,
    a private 256 MiB block each, sequential, 2 s;
  - mbw memcpy (C, one thread, 512 MiB), when installed.

Units: GB/s = 1e9 bytes/s. Copy figures count read + write bytes (STREAM's convention), so a copy
figure is comparable with a read figure; sysbench "write" and mbw count one side only, so they are
doubled here for the "as copy" column and also given raw.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moetui.hardware import bandwidth, cpu
from moetui.paths import atomic_write_json, atomic_write_text

MIB = 2**20


def numpy_threads(n: int, per_thread: int, seconds: float, read_kernel: str = "or") -> dict[str, float]:
    """Independent numpy copy+read: n threads, each its own buffers, fixed window per phase."""
    import numpy as np

    bufs = []
    for _ in range(n):
        src = np.ones(per_thread // 8)
        bufs.append((src, np.zeros_like(src)))
    out: dict[str, float] = {}
    for phase in ("copy", "read"):
        done = [0] * n
        barrier = threading.Barrier(n + 1)
        stop_at = [0.0]

        def work(k: int, phase: str = phase, done: list[int] = done, barrier: threading.Barrier = barrier,
                 stop_at: list[float] = stop_at) -> None:
            src, dst = bufs[k]
            barrier.wait()
            while time.perf_counter() < stop_at[0]:
                if phase == "copy":
                    np.copyto(dst, src)
                    done[k] += 2 * src.nbytes
                else:
                    # a different kernel from moetui's max(): an integer OR-reduce (SIMD, memory bound;
                    # float sum() is not: its pairwise summation is compute bound at ~4 GB/s per core)
                    if read_kernel == "or":
                        np.bitwise_or.reduce(src.view(np.uint64))
                    else:
                        src.max()
                    done[k] += src.nbytes

        ts = [threading.Thread(target=work, args=(k,)) for k in range(n)]
        for t in ts:
            t.start()
        t0 = time.perf_counter()
        stop_at[0] = t0 + seconds
        barrier.wait()
        for t in ts:
            t.join()
        out[phase] = sum(done) / (time.perf_counter() - t0) / 1e9
    return out


def sysbench(op: str, threads: int) -> float | None:
    exe = shutil.which("sysbench")
    if not exe:
        return None
    p = subprocess.run(
        [exe, "memory", f"--threads={threads}", "--time=2", "--memory-block-size=256M", "--memory-total-size=100000G",
         "--memory-scope=local", f"--memory-oper={op}", "--memory-access-mode=seq", "run"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    m = re.search(r"MiB transferred \(([\d.]+) MiB/sec\)", p.stdout)
    return float(m.group(1)) * MIB / 1e9 if m else None


def mbw() -> float | None:
    exe = shutil.which("mbw")
    if not exe:
        return None
    p = subprocess.run([exe, "-q", "-n", "5", "-t0", "512"], capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r"AVG\s+Method: MEMCPY.*Copy: ([\d.]+) MiB/s", p.stdout)
    return float(m.group(1)) * MIB / 1e9 if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tag", default="", help="machine name for the result files: ram_bandwidth-TAG.json/md (default local)")
    ap.add_argument("--out-dir", default=str(REPO / "tuning" / "results"))
    ap.add_argument("--summarize-only", action="store_true",
                    help="measure nothing; rebuild ram_bandwidth.{json,md} from the ram_bandwidth-*.json in --out-dir")
    ap.add_argument("--variants", action="store_true",
                    help="also run the probe with other working-set sizes and slice sizes (module constants)")
    args = ap.parse_args()
    if args.summarize_only:
        summarize(Path(args.out_dir))
        return 0

    c = cpu.read_cpu("/")
    m = cpu.read_memory("/")
    n = c.physical_cores
    per_long = min(2**30, max(64 * MIB, (m.available_bytes // 8) // n))
    machine = {
        "cpu": c.model, "physical_cores": n, "logical_cores": c.logical_cores, "numa_nodes": c.numa_nodes,
        "l3_bytes": c.l3_cache_bytes, "ram_bytes": m.total_bytes, "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "sysbench": bool(shutil.which("sysbench")), "mbw": bool(shutil.which("mbw")),
    }
    rounds = []
    for r in range(args.repeats):
        row: dict[str, float | None] = {"loadavg_1m": os.getloadavg()[0]}
        t = time.perf_counter()
        probe = bandwidth.measure_ram_bandwidth(physical_cores=n, l3_bytes=c.l3_cache_bytes, available_bytes=m.available_bytes)
        row["moetui_wall_s"] = round(time.perf_counter() - t, 3)
        row["moetui_copy"], row["moetui_read"], row["moetui_best"] = probe.copy_gbs, probe.read_gbs, probe.best_gbs
        row["moetui_buffer_mib"] = probe.buffer_bytes // MIB
        if args.variants:
            keep = (bandwidth.L3_MULTIPLE, bandwidth.SLICE_BYTES)
            for l3x, slice_mib in ((4, 1 << 20), (4, 8), (16, 64)):
                bandwidth.L3_MULTIPLE, bandwidth.SLICE_BYTES = l3x, slice_mib * MIB
                t = time.perf_counter()
                v = bandwidth.measure_ram_bandwidth(physical_cores=n, l3_bytes=c.l3_cache_bytes, available_bytes=m.available_bytes)
                tag = f"moetui_{l3x}xL3_slice{'all' if slice_mib >= 1 << 20 else slice_mib}"
                row[f"{tag}_copy"], row[f"{tag}_read"] = v.copy_gbs, v.read_gbs
                row[f"{tag}_wall_s"] = round(time.perf_counter() - t, 3)
            bandwidth.L3_MULTIPLE, bandwidth.SLICE_BYTES = keep
        # moetui's own code with numpy-long's buffers and window: separates "short probe" from "kernel"
        lp = bandwidth.measure_ram_bandwidth(seconds=4.0, budget_s=30.0, threads=n, buffer_bytes=per_long * n)
        row["moetui_long_copy"], row["moetui_long_read"] = lp.copy_gbs, lp.read_gbs
        nl = numpy_threads(n, per_long, 2.0)
        row["numpy_long_copy"], row["numpy_long_read"] = nl["copy"], nl["read"]
        row["numpy_long_read_max"] = numpy_threads(n, per_long, 2.0, read_kernel="max")["read"]
        n1 = numpy_threads(1, 2**30 if m.available_bytes > 8 * 2**30 else 256 * MIB, 1.0)
        row["numpy_1t_copy"], row["numpy_1t_read"] = n1["copy"], n1["read"]
        row["sysbench_read"] = sysbench("read", n)
        row["sysbench_write"] = sysbench("write", n)
        row["sysbench_read_1t"] = sysbench("read", 1)
        row["mbw_memcpy_1t"] = mbw()
        rounds.append({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"{k}={v}" for k, v in rounds[-1].items()), flush=True)

    keys = [k for k in rounds[0] if k not in ("loadavg_1m", "moetui_buffer_mib")]
    summary = {}
    for k in keys:
        vals = [x[k] for x in rounds if x.get(k) is not None]
        if vals:
            summary[k] = {"median": round(statistics.median(vals), 2), "min": round(min(vals), 2), "max": round(max(vals), 2)}
    cmd = f"python3 tuning/ram_bandwidth_check.py --repeats {args.repeats}" + (f" --tag {args.tag}" if args.tag else "")
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": cmd, "machine": machine,
              "unit": "GB/s (1e9 B/s); copy = read+write bytes", "threads": n, "numpy_long_buffer_per_thread_mib": per_long // MIB,
              "rounds": rounds, "summary": summary}
    out = Path(args.out_dir)
    stem = f"ram_bandwidth-{args.tag or 'local'}"
    atomic_write_json(out / f"{stem}.json", result)
    atomic_write_text(out / f"{stem}.md", render_md(result))
    summarize(out)
    print(render_md(result))
    return 0


def summarize(out: Path) -> None:
    """ram_bandwidth.{json,md}: every machine's run (ram_bandwidth-TAG.json) side by side."""
    runs = {p.stem.removeprefix("ram_bandwidth-"): json.loads(p.read_text()) for p in sorted(out.glob("ram_bandwidth-*.json"))}
    atomic_write_json(out / "ram_bandwidth.json", runs)

    def med(res: dict, k: str) -> str:
        v = res["summary"].get(k)
        return f"{v['median']:.1f}" if v else "–"

    lines = [
        "# RAM bandwidth: moetui's probe beside independent measurements, per machine",
        "",
        "Medians over interleaved rounds, GB/s (1e9 B/s); copy counts read + write bytes. What `moetui detect`",
        "reports is the probe's best of read and copy. Details, spreads and load: ram_bandwidth-TAG.md / .json.",
        "Rerun on a machine: `python3 tuning/ram_bandwidth_check.py --repeats 5 --tag TAG` (TAG: local, h100 ...);",
        "rebuild this page: `python3 tuning/ram_bandwidth_check.py --summarize-only`.",
        "",
        "| run | machine | threads | moetui read | moetui copy | probe s | same probe code, ~1 GiB per thread, 2 s: read | numpy read (max / OR) | numpy copy | sysbench read | sysbench write ×2 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tag, r in runs.items():
        lines.append(
            f"| {tag} ({r['measured_at'][:16]}Z, {len(r['rounds'])} rounds) | {r['machine']['cpu']}, {r['machine']['physical_cores']} cores, "
            f"L3 {(r['machine']['l3_bytes'] or 0) // MIB} MiB | {r['threads']} | {med(r, 'moetui_read')} | {med(r, 'moetui_copy')} | "
            f"{med(r, 'moetui_wall_s')} | {med(r, 'moetui_long_read')} | {med(r, 'numpy_long_read_max')} / {med(r, 'numpy_long_read')} | "
            f"{med(r, 'numpy_long_copy')} | {med(r, 'sysbench_read')} | "
            + (f"{r['summary']['sysbench_write']['median'] * 2:.1f}" if "sysbench_write" in r["summary"] else "–") + " |"
        )
    atomic_write_text(out / "ram_bandwidth.md", "\n".join(lines) + "\n")


def render_md(res: dict) -> str:
    s, mc = res["summary"], res["machine"]

    def f(k: str, mult: float = 1.0) -> str:
        if k not in s:
            return "n/a"
        v = s[k]
        return f"{v['median'] * mult:.1f} ({v['min'] * mult:.1f}–{v['max'] * mult:.1f})"

    n = res["threads"]
    lines = [
        f"# RAM bandwidth: moetui's probe beside independent measurements ({mc['cpu']}, {n} cores)",
        "",
        f"Measured {res['measured_at']}, {len(res['rounds'])} interleaved rounds; median (min–max), GB/s = 1e9 B/s.",
        f"Rerun: `{res['command']}`. Raw rounds: the .json beside this file.",
        "",
        "| method | threads | read | copy (read+write) | raw figure as the tool reports it |",
        "|---|---|---|---|---|",
        f"| **moetui probe** (`moetui detect`, {s.get('moetui_wall_s', {}).get('median', '?')} s) | {n} | {f('moetui_read')} | {f('moetui_copy')} | best = {f('moetui_best')} |",
        f"| moetui's probe code, {res['numpy_long_buffer_per_thread_mib']} MiB/thread, 2 s per phase | {n} | {f('moetui_long_read')} | {f('moetui_long_copy')} | |",
        f"| numpy, independent code, {res['numpy_long_buffer_per_thread_mib']} MiB/thread, 2 s | {n} | {f('numpy_long_read')} (OR-reduce); {f('numpy_long_read_max')} (max) | {f('numpy_long_copy')} | |",
        *[f"| moetui probe, variant {k[7:-5]} ({s[k[:-5] + '_wall_s']['median']} s) | {n} | {f(k[:-5] + '_read')} | {f(k)} | |"
          for k in s if k.startswith("moetui_") and "xL3" in k and k.endswith("_copy")],
        f"| numpy, 1 GiB | 1 | {f('numpy_1t_read')} | {f('numpy_1t_copy')} | |",
        f"| sysbench memory, seq, 256 MiB/thread | {n} | {f('sysbench_read')} | {f('sysbench_write', 2)} (write ×2) | write {f('sysbench_write')} |",
        f"| sysbench memory read | 1 | {f('sysbench_read_1t')} | | |",
        f"| mbw memcpy 512 MiB | 1 | | {f('mbw_memcpy_1t', 2)} (×2) | {f('mbw_memcpy_1t')} copied |",
        "",
        (f"Machine: {mc['cpu']}, {mc['physical_cores']} physical / {mc['logical_cores']} logical cores, "
         f"{mc['numa_nodes']} NUMA node(s), L3 {(mc['l3_bytes'] or 0) // MIB} MiB, RAM {mc['ram_bytes'] / 2**30:.0f} GiB, {mc['os']}."),
        f"1-minute load average during the rounds: {', '.join(str(r['loadavg_1m']) for r in res['rounds'])}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
