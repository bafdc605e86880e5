"""`moetui detect`: GPUs, CPU, RAM, bandwidths and what the installed llama.cpp can do."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moetui.cli.output import gib, print_json, table
from moetui.hardware.bandwidth import bandwidth_words
from moetui.hardware.nvidia import capture_nvml
from moetui.hardware.presets import list_presets, load_rig
from moetui.paths import atomic_write_json
from moetui.runtime.rpc_ctypes import probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rig as JSON (the Rig.to_dict() schema)")
    parser.add_argument("--no-bandwidth", action="store_true", help="skip the RAM bandwidth probe (about 0.7 s)")
    parser.add_argument("--rebench", action="store_true", help="re-measure RAM bandwidth instead of using the cached figure")
    parser.add_argument("--rig", metavar="NAME", help="show a reference rig from presets/rigs instead ('list' lists them)")
    parser.add_argument("--rpc", metavar="HOST:PORT[=CAP],...",
                        help="also ask these ggml-rpc-servers for their devices and memory (=CAP: the memory cap it runs with)")
    parser.add_argument(
        "--capture-nvml", metavar="FILE",
        help="also record raw NVML values to FILE (the fixture format tests replay; see moetui.hardware.fake_nvml)",
    )


def run(args: argparse.Namespace) -> int:
    if args.rig and args.rig.lower() == "list":
        for name in list_presets():
            print(name)
        return 0
    if args.capture_nvml:
        atomic_write_json(Path(args.capture_nvml), capture_nvml())
        print(f"NVML capture written to {args.capture_nvml}", file=sys.stderr)
    if args.rig:
        rig = load_rig(args.rig)
    else:
        rig = load_rig("auto", measure_bandwidth=not args.no_bandwidth, use_cache=not args.rebench)
    if args.rpc:
        rig.remotes = probe(args.rpc)
    if args.json:
        print_json(rig.to_dict())
        return 0
    print(render(rig))
    return 0


def _bw(v: float | None) -> str:
    return f"{v:,.1f} GB/s" if v else "?"


def render(rig) -> str:  # type: ignore[no-untyped-def]
    """Readable text report of a Rig."""
    out: list[str] = []
    src = "reference rig" if rig.source == "preset" else "detected"
    out.append(f"{rig.name}  ({src}, fingerprint {rig.fingerprint})")
    out.append("")
    if rig.gpus:
        rows = []
        for g in rig.gpus:
            # the link figure uses the best the link trains to; idle links show lower "now" values
            gen, width = g.pcie_gen_max or g.pcie_gen_current, g.pcie_width_max or g.pcie_width_current
            now = (g.pcie_gen_current, g.pcie_width_current)
            pcie = "unified memory" if g.unified_memory else (
                f"gen{gen or '?'} x{width or '?'} = {_bw(g.pcie_bandwidth_gbs)}"
                + (f" (idle now: gen{now[0]} x{now[1]})" if now[0] and now != (gen, width) else "")
            )
            name = g.name + (f" [MIG x{len(g.mig_devices)}]" if g.mig_enabled else "")
            rows.append([g.index, name, f"{gib(g.vram_free_bytes)} free / {gib(g.vram_total_bytes)}", _bw(g.mem_bandwidth_gbs), pcie, g.compute_capability or "-"])
        out.append(table(rows, ["#", "GPU", "VRAM", "mem bandwidth", "host link", "cc"]))
        drv = next((g for g in rig.gpus if g.driver_version), None)
        if drv:
            out.append(f"driver {drv.driver_version}, CUDA {drv.cuda_version or '?'}")
    else:
        out.append("GPU: none found")
    out.append("")
    c, m = rig.cpu, rig.memory
    cores = f"{c.physical_cores} cores / {c.logical_cores} threads"
    if c.performance_cores is not None:
        cores += f" ({c.performance_cores}P + {c.efficiency_cores}E)"
    probe = rig.bandwidth_probe
    if rig.source == "preset":
        bw_note = "typical measured" + (f"; peak {m.theoretical_bandwidth_gbs:g} GB/s" if m.theoretical_bandwidth_gbs else "")
    elif probe:
        parts = []
        if probe.copy_gbs:
            parts.append(f"copy {probe.copy_gbs:g}")
        if probe.read_gbs:
            parts.append(f"read {probe.read_gbs:g}")
        when = "" if probe.interrupted else bandwidth_words(rig.ram_bandwidth_gbs, probe).partition(", ")[2]
        bw_note = (f"{when or 'measured'}, {probe.threads} threads: {', '.join(parts)}"
                   + (f"; a quick check now read {probe.check_gbs:g}" if probe.check_gbs else "")
                   + (", INTERRUPTED" if probe.interrupted else ""))
    else:
        bw_note = "not measured"
    rows = [
        ["CPU", f"{c.model} ({c.arch})"],
        ["cores", cores + (f", {c.numa_nodes} NUMA nodes" if c.numa_nodes > 1 else "")],
        ["ISA", " ".join(c.flags) or "?"],
        ["RAM", f"{gib(m.available_bytes)} available / {gib(m.total_bytes)}"],
        ["swap", f"{gib(m.swap_free_bytes)} free / {gib(m.swap_total_bytes)}" if m.swap_total_bytes else "none"],
        ["RAM bandwidth", f"{_bw(rig.ram_bandwidth_gbs)} ({bw_note})"],
    ]
    if probe is not None and probe.note and rig.source != "preset":
        rows.append(["", probe.note])
    b = rig.build
    if b.installed:
        # llama_supports_gpu_offload() is true for a build with RPC support and no GPU at all: "yes" only with one
        offload = ("yes" if b.gpu_offload and rig.gpus else "none (no GPU found; the build could offload to one)"
                   if b.gpu_offload else "NO")
        rows.append(["llama.cpp", f"llama-cpp-python {b.version}, backends: {', '.join(b.backends) or '?'}, GPU offload: {offload}"])
        for d in b.devices:
            mem = f", {gib(d.memory_free_bytes or 0)} free / {gib(d.memory_total_bytes or 0)}" if d.memory_total_bytes else ""
            rows.append(["  device", f"{d.name} ({d.type}): {d.description}{mem}"])
        if b.repack_safe is False:
            rows.append(["  repacking", f"OFF: {b.repack_note}"])
    else:
        rows.append(["llama.cpp", "llama-cpp-python not installed"])
    from moetui.sizing.remote import remote_line  # the sizing core loads gguf: not at the CLI's start

    rows += [["remote", remote_line(r)] for r in rig.remotes]
    out.append(table(rows))
    if b.advice:
        out.append("")
        out.append("!! " + b.advice)
    if rig.warnings:
        out.append("")
        out.append("Warnings (what could not be read, and caveats):")
        for w in rig.warnings:
            if b.advice and w == b.advice.splitlines()[0]:
                continue
            out.append(f"  - {w}")
    if rig.notes:
        out.append("")
        out.append(f"Sources: {rig.notes}")
    return "\n".join(out)
