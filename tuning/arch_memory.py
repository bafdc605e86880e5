"""moetui's memory formula against llama.cpp's own accounting, per architecture, at full size.

For every shape preset: the header of its full-size proxy over sparse data (a few MB of disk), dry-run by
llama.cpp (no_alloc, llama_get_memory_breakdown; moetui.runtime.dry_run) CPU-only at each context, and
the formula's weights / KV (+ recurrent state) / compute for the same config (moetui.sizing.placement).
The plan the user sees takes llama.cpp's figures where the dry run can run; this table is how far the
formula alone (the search, what-if rigs) is off. Also: the tiny proxies' real allocation vs the dry run
(tests/test_sizing_architectures.py holds that to the log's rounding).

    python3 tuning/arch_memory.py [--ctx 4096,32768] [--shapes a,b] [--out tuning/results/arch_memory]
    python3 tuning/arch_memory.py --tiny --ctx 4096 --out tuning/results/arch_memory_tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moetui.config import RunConfig  # noqa: E402
from moetui.model.inspect import inspect_file  # noqa: E402
from moetui.model.proxy import write_proxy  # noqa: E402
from moetui.model.shapes import list_shapes, load_shape, scaled  # noqa: E402
from moetui.model.virtual import shape_mix, write_sparse_shape  # noqa: E402
from moetui.runtime.dry_run import dry_run  # noqa: E402
from moetui.sizing.placement import MemorySettings, place  # noqa: E402

GIB = 1 << 30


def measure(shape: str, n_ctx: int, folder: Path, flash_attn: bool = True, tiny: bool = False) -> dict:
    """tiny: a real tiny proxy, and llama.cpp's real allocation of it (load mode none) instead of the dry run."""
    if tiny:
        path = write_proxy(scaled(load_shape(shape), "tiny"), folder / f"{shape}-tiny.gguf", shape_mix(shape)).path
    else:
        path = write_sparse_shape(shape, folder / f"{shape}.gguf", shape_mix(shape))
    info = inspect_file(path)
    formula = place(info, [], {}, [], MemorySettings(n_ctx, flash_attn=flash_attn)).memory["CPU"]
    got = dry_run(RunConfig(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=0,
                            flash_attn="on" if flash_attn else "off"), allocate=tiny).devices["CPU"]
    row = {"shape": shape + (" (tiny, real allocation)" if tiny else ""), "architecture": info.architecture,
           "n_ctx": n_ctx, "flash_attn": flash_attn}
    for kind, mine, real in (("weights", formula.weights, got.model), ("kv", formula.kv, got.context),
                             ("compute", formula.compute, got.compute)):
        row[kind] = {"formula": mine, "llama_cpp": real, "error": (mine - real) / real if real else 0.0}
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ctx", default="4096,32768")
    ap.add_argument("--shapes", default="")
    ap.add_argument("--tiny", action="store_true", help="tiny proxies, against llama.cpp's real allocation")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "arch_memory"))
    args = ap.parse_args()
    shapes = [s for s in (args.shapes.split(",") if args.shapes else list_shapes()) if s]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            for ctx in (int(c) for c in args.ctx.split(",")):
                for fa in (True, False):
                    rows.append(measure(shape, ctx, Path(tmp), fa, args.tiny))
                    r = rows[-1]
                    print(f"{shape:24} {ctx:6} fa={'on ' if fa else 'off'} " + "  ".join(
                        f"{k} {r[k]['llama_cpp'] / GIB:8.3f} GiB {100 * r[k]['error']:+6.1f}%"
                        for k in ("weights", "kv", "compute")), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": "python3 tuning/arch_memory.py " + " ".join(sys.argv[1:]),
                                                    "rows": rows}, indent=1))
    what = "real allocation (tiny proxies)" if args.tiny else "dry run (full-size shapes)"
    lines = [f"# moetui's memory formula vs llama.cpp's {what}, CPU, f16 KV, ubatch 512", "",
             f"Rerun: `python3 tuning/arch_memory.py {' '.join(sys.argv[1:])}`. Error = (formula - llama.cpp) / llama.cpp;",
             "the plan shown to the user replaces these by llama.cpp's figures where the dry run can run.", "",
             "| shape | arch | ctx | FA | weights GiB | err | KV+state GiB | err | compute GiB | err |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['architecture']} | {r['n_ctx']} | {'on' if r['flash_attn'] else 'off'} | " + " | ".join(
            f"{r[k]['llama_cpp'] / GIB:.3f} | {100 * r[k]['error']:+.1f}%" for k in ("weights", "kv", "compute")) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
