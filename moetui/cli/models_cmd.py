"""`moetui models`: catalog and local models; `list REPO` a hub repo's quants; `download REPO:QUANT`;
`add-folder PATH` / `remove-folder PATH` for folders of GGUFs to scan. `--json` on every form."""

from __future__ import annotations

import argparse
import sys
import time

from moetui.cli.output import human_bytes, print_json, table, to_jsonable
from moetui.errors import HubError
from moetui.hub.cache import cached_listing, cached_model_path
from moetui.hub.catalog import load_catalog
from moetui.hub.discovery import add_folder, discover_local, remove_folder
from moetui.hub.listing import list_repo, parse_ref


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="models_action", metavar="ACTION")
    p = sub.add_parser("list", help="a hub repo's GGUF quants with sizes (split files grouped)")
    p.add_argument("repo", help="owner/repo (optionally owner/repo@revision)")
    p = sub.add_parser("download", help="download REPO:QUANT into the Hugging Face cache (resumable)")
    p.add_argument("ref", help="owner/repo:QUANT or owner/repo/file.gguf")
    p = sub.add_parser("add-folder", help="scan a folder of GGUF files from now on")
    p.add_argument("path")
    p = sub.add_parser("remove-folder", help="stop scanning a folder")
    p.add_argument("path")
    for action in sub.choices.values():
        # SUPPRESS: a subcommand's default must not overwrite `moetui models --json ACTION`
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "models_action", None)
    if action == "list":
        return _list_repo(args)
    if action == "download":
        return _download(args)
    if action == "add-folder":
        path = add_folder(args.path)
        print_json({"added": str(path)}) if args.json else print(f"added {path}")
        return 0
    if action == "remove-folder":
        removed = remove_folder(args.path)
        if args.json:
            print_json({"removed": removed, "path": args.path})
        else:
            print(f"removed {args.path}" if removed else f"{args.path} was not in the folder list")
        return 0
    return _overview(args)


def _overview(args: argparse.Namespace) -> int:
    from moetui.model.inspect import header_file_type  # gguf: only where headers are read

    catalog = load_catalog()
    local = discover_local()
    from_name = set()
    for m in local:  # the quant the header declares; the file name's only where the header cannot be read
        label = header_file_type(m.path)
        if label:
            m.quant = label
        else:
            from_name.add(m.path)
    # catalog quants already complete in the HF cache (read from refs/ and snapshots/, no request)
    downloaded = {q.ref: str(path) for m in catalog for q in m.quants if (path := cached_model_path(q.ref))}
    if args.json:
        print_json({"catalog": catalog, "local": local, "downloaded": downloaded})
        return 0
    rows = []
    for m in catalog:
        for q in m.quants:
            size = ("~" if q.approx else "") + human_bytes(q.size_bytes)
            rows.append([m.name, q.quant, size, q.repo, m.shape or "-", "yes" if q.ref in downloaded else ""])
    print("Catalog (sizes marked ~ are approximate; `moetui models list REPO` shows exact ones)")
    print(table(rows, ["model", "quant", "size", "repo", "shape", "downloaded"]))
    print()
    if local:
        print("Local models")
        print(table([[m.name, (m.quant or "-") + ("?" if m.path in from_name else ""), human_bytes(m.size_bytes),
                      m.source, str(m.path)] for m in local],
                    ["name", "quant", "size", "source", "path"]))
        if from_name:
            print("quant? : from the file name (the header could not be read)")
    else:
        print("No local GGUF models found (HF cache, LM Studio, Ollama, added folders).")
    return 0


def _list_repo(args: argparse.Namespace) -> int:
    r = parse_ref(args.repo)
    try:
        listing = list_repo(r.repo, r.revision)
        source = "hub"
    except HubError as exc:
        # offline (HF_HUB_OFFLINE or no network): what the local HF cache holds of the repo still answers
        local = cached_listing(r.repo, r.revision) if str(exc).startswith("offline:") else None
        if local is None or not local.quants:
            raise
        listing, source = local, "local HF cache"
        print(f"moetui: {exc}; showing the quants in the local HF cache", file=sys.stderr)
    if args.json:
        print_json({**to_jsonable(listing), "source": source})
        return 0
    print(f"{listing.repo} @ {listing.revision} ({(listing.commit or '?')[:12]})"
          + ("" if source == "hub" else f", from the {source}"))
    rows = [[g.quant, human_bytes(g.size_bytes), f"{g.size_bytes:,}",
             g.first.path + (f"  (+{len(g.files) - 1} parts)" if g.is_split else "")] for g in listing.quants]
    print(table(rows, ["quant", "size", "bytes", "file"]) if rows else "no GGUF files")
    return 0


def _download(args: argparse.Namespace) -> int:
    # gguf: loaded when this runs, not at start-up
    from moetui.hub.download import DownloadProgress, download_model

    tty = sys.stderr.isatty() and not args.json
    last = [0.0]

    def show(p: DownloadProgress) -> None:
        now = time.monotonic()
        if p.phase != "done" and now - last[0] < 0.5:
            return
        last[0] = now
        eta = f" ETA {p.eta_s:.0f}s" if p.eta_s is not None else ""
        part = f" part {p.file_index + 1}/{p.n_files}" if p.n_files > 1 else ""
        line = (f"{p.phase}{part}: {human_bytes(p.bytes_done)} / {human_bytes(p.bytes_total)} "
                f"({p.fraction:.0%}) {human_bytes(p.speed_bps)}/s{eta}")
        print(("\r" + line.ljust(78)) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        result = download_model(args.ref, progress=show)
    except KeyboardInterrupt:
        print("\nmoetui: interrupted; the partial download is kept, run the same command to resume", file=sys.stderr)
        return 130
    if tty:
        print(file=sys.stderr)
    if args.json:
        print_json(result)
    else:
        print(result.path)
    return 0
