"""The standard HF hub cache layout, shared with huggingface_hub, llama.cpp -hf and other tools:

    <cache>/models--OWNER--NAME/blobs/<etag>                 the bytes (etag = sha256 for LFS files)
    <cache>/models--OWNER--NAME/snapshots/<commit>/<path>    relative symlink to the blob
    <cache>/models--OWNER--NAME/refs/<branch>                the commit a branch pointed to
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from moetui.errors import HubError, ModelFileError
from moetui.hub.connection import hf_cache_dir
from moetui.hub.listing import (
    SPLIT_RE, HubRef, QuantGroup, RemoteFile, RepoListing, group_quants, looks_like_hub_ref, parse_ref, select_quant,
)
from moetui.paths import atomic_write_text

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def repo_dir(repo: str, cache: Path | None = None) -> Path:
    return (cache or hf_cache_dir()) / ("models--" + repo.replace("/", "--"))


def commit_for(repo: str, revision: str | None, cache: Path | None = None) -> str | None:
    """The commit a revision resolves to locally (a commit hash is itself; a branch is read from refs/)."""
    rev = revision or "main"
    if _COMMIT_RE.match(rev):
        return rev
    ref_file = repo_dir(repo, cache) / "refs" / rev
    try:
        return ref_file.read_text().strip() or None
    except OSError:
        return None


def write_ref(repo: str, revision: str, commit: str, cache: Path | None = None) -> None:
    if revision != commit:
        atomic_write_text(repo_dir(repo, cache) / "refs" / revision, commit)


def pointer_path(repo: str, commit: str, path: str, cache: Path | None = None) -> Path:
    return repo_dir(repo, cache) / "snapshots" / commit / Path(*path.split("/"))


def blob_path(repo: str, etag: str, cache: Path | None = None) -> Path:
    return repo_dir(repo, cache) / "blobs" / etag


def link_pointer(blob: Path, pointer: Path) -> None:
    """Relative symlink snapshot -> blob, as huggingface_hub makes it; a move where symlinks are refused."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:  # e.g. Windows without developer mode: huggingface_hub keeps the file in snapshots
        os.replace(blob, pointer)


def cached_listing(repo: str, revision: str | None = None, cache: Path | None = None) -> RepoListing | None:
    """The GGUF quants present in the local snapshot of a repo (offline: no request)."""
    commit = commit_for(repo, revision, cache)
    if not commit:
        return None
    snap = repo_dir(repo, cache) / "snapshots" / commit
    if not snap.is_dir():
        return None
    files = []
    for p in sorted(snap.rglob("*.gguf")):
        if p.is_file():  # follows the symlink: a dangling pointer is not a cached file
            files.append(RemoteFile(p.relative_to(snap).as_posix(), p.stat().st_size))
    groups = [g for g in group_quants(files) if _complete(g)]
    return RepoListing(repo, revision or "main", commit, groups)


def _complete(group: QuantGroup) -> bool:
    m = SPLIT_RE.match(Path(group.first.path).name)
    return not m or len(group.files) == int(m.group("count"))


def local_model_file(ref: str, cache: Path | None = None) -> str:
    """The file to load for REF: a local path as given, a hub model from the HF cache. A hub model that
    is not downloaded raises a ModelFileError that says how to download it (never "no such model file")."""
    if Path(ref).expanduser().is_file():
        return str(Path(ref).expanduser())
    if looks_like_hub_ref(ref) and not Path(ref).expanduser().exists():
        cached = cached_model_path(ref, cache)
        if cached is not None and cached.is_file():
            return str(cached)
        raise ModelFileError(f"{ref} is not downloaded: `moetui models download {ref}` fetches it into the Hugging "
                             "Face cache (resumable), then run this again (`moetui plan` sizes it without the file)")
    raise ModelFileError(f"{ref}: no such model file")


def needs_download(ref: str, cache: Path | None = None) -> bool:
    """Whether REF names a hub model (owner/repo:QUANT) that is neither a local file nor complete in the HF
    cache: it can be sized and planned from its header or shape, but not run until it is downloaded."""
    if not ref or Path(ref).expanduser().exists() or not looks_like_hub_ref(ref):
        return False
    try:
        return cached_model_path(ref, cache) is None
    except HubError:
        return True


def cached_model_path(ref: str | HubRef, cache: Path | None = None) -> Path | None:
    """The local path (first part of a split model) if every file of REF is already in the HF cache."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    listing = cached_listing(r.repo, r.revision, cache)
    if listing is None or not listing.quants:
        return None
    try:
        group = select_quant(listing, r)
    except HubError:
        return None
    return pointer_path(r.repo, listing.commit or "", group.first.path, cache)
