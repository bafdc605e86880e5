"""`moetui proxy`: write a synthetic GGUF with a real model's exact shapes, for trying before downloading."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from moetui.cli.inspect_cmd import load_info
from moetui.cli.output import human_bytes, print_json, table
from moetui.errors import ConfigError
from moetui.model.proxy import predicted_size, write_proxy
from moetui.model.quant_mix import MIXES
from moetui.model.shapes import Shape, list_shapes, load_shape, scaled, shape_from_info
from moetui.paths import data_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shape", nargs="?", help=f"a shape preset ({', '.join(list_shapes())})")
    p.add_argument("--like", metavar="GGUF|REPO:QUANT", help="copy the shape of an existing GGUF (local or on the hub)")
    p.add_argument("--scale", choices=("full", "small", "tiny"), default="full")
    p.add_argument("--mix", choices=sorted(MIXES), default=None, help="quant mix (default Q4_K_M, or MXFP4 for gpt-oss)")
    p.add_argument("-o", "--output", help="where to write (default: the user data dir's models/ folder)")
    p.add_argument("--list", action="store_true", help="list shape presets and exit")
    p.add_argument("--dry-run", action="store_true", help="print the size it would have, write nothing")
    p.add_argument("--json", action="store_true")


def resolve_shape(args: argparse.Namespace) -> Shape:
    if args.like:
        return shape_from_info(load_info(args.like))
    if not args.shape:
        raise ConfigError("name a shape preset or --like a GGUF (see `moetui proxy --list`)")
    return load_shape(args.shape)


def default_path(shape: Shape, scale: str, mix: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in shape.name).strip("-")
    return data_dir() / "models" / f"{slug}-{scale}-{mix}-proxy.gguf"


class _Progress:
    """A one-line progress meter on stderr, redrawn at most twice a second."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < 0.5:
            return
        self.last = now
        speed = done / max(now - self.t0, 1e-6) / 1e9
        end = "\n" if done >= total else ""
        print(f"\r  {100 * done / total:5.1f}%  {human_bytes(done)} / {human_bytes(total)}  {speed:.2f} GB/s",
              end=end, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.list:
        rows = []
        for name in list_shapes():
            s = load_shape(name)
            rows.append((name, s.architecture, s.n_layers, f"{s.n_expert}/{s.n_expert_used}" if s.n_expert else "dense",
                         human_bytes(predicted_size(s, "MXFP4" if s.architecture == "gpt-oss" else "Q4_K_M"))))
        print(table(rows, ["shape", "arch", "layers", "experts", "full size (Q4_K_M/MXFP4)"]))
        return 0
    base = resolve_shape(args)
    shape = scaled(base, args.scale)
    mix = args.mix or ("MXFP4" if shape.architecture == "gpt-oss" else "Q4_K_M")
    out = Path(args.output) if args.output else default_path(base, args.scale, mix)
    size = predicted_size(shape, mix)
    if args.dry_run:
        result = {"path": str(out), "bytes": size, "shape": shape.to_dict(), "mix": mix}
        print_json(result) if args.json else print(f"{shape.name} {mix}: {human_bytes(size)} -> {out}")
        return 0

    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
    if size > free:
        raise ConfigError(f"not enough disk space for {out}: needs {human_bytes(size)}, {human_bytes(free)} free")
    if not args.json:
        print(f"writing {shape.name} ({mix}, {human_bytes(size)}) to {out}", file=sys.stderr)
    result = write_proxy(shape, out, mix, progress=None if args.json else _Progress())
    summary = {"path": str(result.path), "bytes": result.bytes_written, "seconds": round(result.seconds, 3),
               "gb_per_s": round(result.gb_per_s, 3), "tensors": result.n_tensors, "mix": mix, "shape": shape.to_dict()}
    if args.json:
        print_json(summary)
    else:
        print(f"{result.path}  {human_bytes(result.bytes_written)} in {result.seconds:.1f} s ({result.gb_per_s:.2f} GB/s)")
    return 0
