"""The full-scale proxy writer against the disk it writes to, side by side in one run.

Writes a full-scale Qwen3-30B-A3B Q4_K_M-like proxy (the product's "try before you download" file), then
`dd if=/dev/zero bs=1M conv=fdatasync` of 4 GiB to the same folder: the writer "writes at disk speed" if
the two rates are close. Also checks the file size against the published GGUF (presets/models.toml) and
the writer's peak RSS (it streams: it must not hold the model in memory).

Run: python3 tuning/proxy_write_speed.py [--dir /tmp]   (needs ~19 GB free there; deletes what it writes)
Writes tuning/results/proxy_write.json and .md.
"""

from __future__ import annotations

import argparse
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from moetui.hub.catalog import find_model
from moetui.paths import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
SHAPE, MIX = "qwen3-30b-a3b", "Q4_K_M"


def write_proxy_timed(path: Path) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "moetui", "proxy", SHAPE, "--scale", "full", "--mix", MIX, "-o", str(path)],
                       capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    size = path.stat().st_size
    return {"bytes": size, "seconds": seconds, "gbs": size / seconds / 1e9, "peak_rss_mib": rss_kb / 1024,
            "log_tail": p.stdout.strip().splitlines()[-1][-200:] if p.stdout.strip() else ""}


def dd_rate(folder: Path, gib: int = 4) -> dict:
    target = folder / "moetui-dd-test"
    try:
        p = subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={gib * 1024}", "conv=fdatasync"],
                           capture_output=True, text=True, check=True)
    finally:
        target.unlink(missing_ok=True)
    m = re.search(r"copied, ([\d.]+) s", p.stderr)
    seconds = float(m.group(1)) if m else float("nan")
    return {"bytes": gib << 30, "seconds": seconds, "gbs": (gib << 30) / seconds / 1e9}


def published_size() -> int | None:
    entry = find_model("qwen3-30b-a3b-instruct-2507")
    return next((q.size_bytes for q in entry.quants if q.quant == MIX), None) if entry else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp")
    args = ap.parse_args()
    folder = Path(args.dir)
    path = folder / f"moetui-full-{SHAPE}-{MIX}.gguf"
    try:
        w = write_proxy_timed(path)
    finally:
        path.unlink(missing_ok=True)
    d = dd_rate(folder)
    pub = published_size()
    out = {"machine": platform.node(), "cpu": platform.processor() or platform.machine(), "folder": str(folder),
           "writer": w, "dd": d, "writer_vs_dd": w["gbs"] / d["gbs"], "published_bytes": pub,
           "size_error": (w["bytes"] / pub - 1) if pub else None}
    res = HERE / "results"
    atomic_write_json(res / "proxy_write.json", out)
    lines = [
        "# Full-scale proxy writer vs the disk", "",
        f"Qwen3-30B-A3B {MIX}-like proxy, `moetui proxy {SHAPE} --scale full`, then `dd ... conv=fdatasync` "
        f"(4 GiB) in the same folder ({folder}). Rerun: `python3 tuning/proxy_write_speed.py`.", "",
        "| | bytes | seconds | GB/s |", "|---|---|---|---|",
        f"| moetui proxy writer | {w['bytes']:,} | {w['seconds']:.1f} | {w['gbs']:.2f} |",
        f"| dd (zeros, fdatasync) | {d['bytes']:,} | {d['seconds']:.1f} | {d['gbs']:.2f} |", "",
        f"- writer / dd: {out['writer_vs_dd']:.2f}x; writer peak RSS {w['peak_rss_mib']:.0f} MiB (streamed)",
    ]
    if pub:
        lines.append(f"- size vs the published {MIX} GGUF ({pub:,} bytes, presets/models.toml): {out['size_error']:+.2%}")
    atomic_write_text(res / "proxy_write.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
