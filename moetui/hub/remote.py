"""Inspect a model on the hub without downloading it: GGUF headers read over HTTP range requests.

A GGUF's header (metadata, vocabulary, tensor infos) is its first few MB; `read_header` asks for more
when the header says so. Split models: every part carries its own tensor infos, so each part's header is
read. `resolve_model_ref` is what commands call with whatever the user typed: a local path, a model
already in the HF cache (works offline), or a hub reference to size remotely.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlparse

from moetui.errors import HubError, ModelFileError
from moetui.hardware.net_limits import check_size, net_limits
from moetui.hub.bounded_http import bounded_get, call_with_deadline, host_of
from moetui.hub.cache import cached_model_path
from moetui.hub.connection import auth_headers, endpoint, hub_errors, require_online
from moetui.hub.listing import HubRef, QuantGroup, RepoListing, list_repo, looks_like_hub_ref, parse_ref, select_quant
from moetui.model.gguf_header import read_header
from moetui.model.info import ModelInfo
from moetui.model.inspect import inspect_headers, inspect_file

# huggingface_hub: imported inside the functions that need them, to keep start-up fast

READAHEAD = 4 << 20  # one request covers a typical header (a 150k-token vocabulary is ~3-5 MB)


class HubRangeSource:
    """A ByteSource over one file on the hub: HTTP Range GETs, redirects followed, auth kept on the hub."""

    def __init__(self, repo: str, path: str, revision: str = "main", size: int | None = None) -> None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url  # heavy: only for a remote file

        require_online(f"reading {repo}/{path}")
        self.name = f"hf://{repo}/{path}"
        url = hf_hub_url(repo, path, revision=revision, endpoint=endpoint())
        headers = auth_headers()
        lim = net_limits()
        with hub_errors(f"reading {repo}/{path}"):
            meta = call_with_deadline(lambda: get_hf_file_metadata(url, headers=dict(headers), timeout=lim.total_s),
                                      what=f"reading {repo}/{path}", host=host_of(url), limits=lim)
        # The HEAD's Location is where the bytes are (a CDN for LFS files): range-read there directly.
        self.url = urljoin(url, meta.location) if meta.location else url
        same_host = urlparse(self.url).netloc == urlparse(url).netloc
        self._headers = {k: v for k, v in headers.items() if same_host or k.lower() != "authorization"}
        self._headers["Accept-Encoding"] = "identity"  # byte offsets must be offsets into the file
        known = size if size is not None else meta.size
        if known is None:
            raise HubError(f"{self.name}: the hub did not say how large the file is")
        self._size: int = check_size(host_of(self.url), f"size of {path}", known)
        self.etag = meta.etag
        self.requests = 0
        self.bytes_fetched = 0
        self._win_start = 0
        self._win = b""

    def size(self) -> int:
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.size())
        if offset >= end:
            return b""
        if not (self._win_start <= offset and end <= self._win_start + len(self._win)):
            want_end = min(max(end, offset + READAHEAD), self.size())
            self._win = self._fetch(offset, want_end)
            self._win_start = offset
        rel = offset - self._win_start
        return self._win[rel : rel + (end - offset)]

    def _fetch(self, start: int, end: int) -> bytes:
        self.requests += 1
        headers = dict(self._headers, Range=f"bytes={start}-{end - 1}")
        want = end - start
        what = f"reading {self.name}"
        # a server that ignores Range answers 200 with the whole file: its first `start` bytes are skipped,
        # and reading stops at `want` bytes, before the weights
        reply = bounded_get(self.url, what=what, headers=headers, max_bytes=want, keep_from=start, stop_at_cap=True)
        if reply.status not in (200, 206):
            raise HubError(f"{what}: HTTP {reply.status} for bytes {start}-{end - 1}")
        if reply.status == 206:
            _check_content_range(self.name, reply.headers.get("content-range"), start, end)
        out = reply.body
        self.bytes_fetched += len(out)
        if len(out) < want:
            raise HubError(f"reading {self.name}: the server sent {len(out):,} of the {want:,} bytes asked for "
                           f"at {start:,} (a proxy or server that cuts ranges short)")
        return out


def _check_content_range(name: str, header: str | None, start: int, end: int) -> None:
    """A 206 must carry the range asked for: bytes from elsewhere would be parsed as the header."""
    m = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", header or "")
    if m is None or int(m.group(1)) != start:
        raise HubError(f"reading {name}: asked for bytes {start}-{end - 1}, the server answered with "
                       f"{(header or 'no Content-Range')[:60]}")


def remote_group(ref: str | HubRef) -> tuple[HubRef, RepoListing, QuantGroup]:
    r = parse_ref(ref) if isinstance(ref, str) else ref
    listing = list_repo(r.repo, r.revision)
    return r, listing, select_quant(listing, r)


def inspect_remote(ref: str | HubRef) -> ModelInfo:
    """ModelInfo of REPO:QUANT or REPO/FILE.gguf from its header(s) alone."""
    r, listing, group = remote_group(ref)
    revision = listing.commit or listing.revision
    headers = []
    for i, f in enumerate(group.files):
        src = HubRangeSource(r.repo, f.path, revision, size=f.size)
        headers.append(read_header(src, split=i))
    count = headers[0].get("split.count")
    if count is not None and count != len(group.files):
        raise ModelFileError(f"{r.repo}/{group.first.path}: header says {count} parts, the repo has {len(group.files)}")
    info = inspect_headers(headers, f"hf://{r.repo}/{group.first.path}")
    info.files = [f"hf://{r.repo}/{f.path}" for f in group.files]
    info.file_bytes = group.size_bytes
    # the headers over sparse data are all llama.cpp's dry run needs (moetui.runtime.dry_run)
    info.header_parts = [(f.path, h.header_bytes, f.size) for f, h in zip(group.files, headers)]
    return info


def resolve_model_ref(ref: str) -> ModelInfo | Path:
    """A local path -> Path; a hub ref already in the HF cache -> its local Path (offline too);
    otherwise a hub ref -> ModelInfo read remotely. Bad input -> ModelFileError / HubError."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if not looks_like_hub_ref(ref):
        raise ModelFileError(f"{ref}: no such file (and not a hub reference like owner/repo:Q4_K_M)")
    cached = cached_model_path(ref)
    if cached is not None:
        return cached
    return inspect_remote(ref)


def inspect_ref(ref: str) -> ModelInfo:
    """ModelInfo for any reference: local file, cached hub model, or remote hub model."""
    got = resolve_model_ref(ref)
    return inspect_file(got) if isinstance(got, Path) else got
