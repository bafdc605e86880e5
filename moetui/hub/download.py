"""Download a model's GGUF file(s) into the standard HF cache, resumable and checked.

Files land exactly where `hf_hub_download` puts them (blobs/<etag> + snapshots/<commit>/<path> symlink,
refs/<branch>), so llama.cpp -hf, huggingface_hub and other tools reuse them. moetui drives the transfer
itself, with huggingface_hub's `http_get` (Range requests, retries on dropped connections): since 1.x
`hf_hub_download` writes to a per-process temp file that it deletes on any failure, so an interrupted
60 GB download would restart from zero. Here the partial bytes stay in blobs/<etag>.incomplete and the
next run resumes from them. A finished file is hashed and compared with the hub's LFS sha256; on mismatch
the file is deleted and HubError raised, so nothing half-written is ever left in the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlparse

from moetui.errors import Cancelled, HubError, first_line
from moetui.hardware.net_limits import ServerClaimError, check_size, net_limits
from moetui.hub.bounded_http import call_with_deadline, host_of
from moetui.hub.cache import blob_path, link_pointer, pointer_path, repo_dir, write_ref
from moetui.hub.connection import auth_headers, endpoint, hf_cache_dir, hub_errors, require_online
from moetui.hub.listing import HubRef, QuantGroup, RemoteFile, parse_ref
from moetui.hub.remote import remote_group
from moetui.config.units import gib_fixed

# huggingface_hub and httpx2: imported inside the functions that need them, to keep start-up fast

DISK_MARGIN = 256 << 20  # keep a little free space beyond the file itself
HASH_CHUNK = 8 << 20
_SAFE_ETAG = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass
class DownloadProgress:
    """One progress event, for the TUI or a CLI status line. Byte counts cover all parts of the model."""

    repo: str
    file: str
    file_index: int  # 0-based part being transferred
    n_files: int
    phase: str  # "download" | "verify" | "done"
    bytes_done: int
    bytes_total: int
    file_bytes_done: int
    file_bytes_total: int
    speed_bps: float  # bytes/s over this run's transfer so far (resumed bytes not counted)
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


@dataclass
class DownloadResult:
    repo: str
    quant: str
    commit: str
    paths: list[Path]  # snapshot paths, in part order; paths[0] is what llama.cpp loads
    size_bytes: int
    bytes_transferred: int  # over the network this run
    bytes_resumed: int  # already on disk from an interrupted run
    bytes_cached: int  # files already complete in the cache
    seconds: float
    verified: list[str] = field(default_factory=list)  # files whose sha256 was checked

    @property
    def path(self) -> Path:
        return self.paths[0]


DownloadCancelled = Cancelled  # the caller's cancel event was set; the partial file is kept for a later resume


ProgressFn = Callable[[DownloadProgress], None]


class _Tracker:
    """Aggregates byte counts over parts and emits throttled progress events."""

    def __init__(self, repo: str, n_files: int, total: int, done: int, progress: ProgressFn | None,
                 cancel: threading.Event | None, interval_s: float = 0.1) -> None:
        self.repo, self.n_files, self.total = repo, n_files, total
        self.done_before = done  # bytes complete before the current file
        self.progress, self.cancel, self.interval_s = progress, cancel, interval_s
        self.transferred = 0
        self.t0 = time.monotonic()
        self._last = 0.0
        self.file, self.index, self.file_total, self.file_done = "", 0, 0, 0

    def start_file(self, index: int, file: RemoteFile, already: int) -> None:
        self.file, self.index, self.file_total, self.file_done = file.path, index, file.size, already

    def add(self, n: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(f"download of {self.repo} cancelled; run it again to resume")
        self.file_done += n
        self.transferred += n
        self.emit("download")

    def emit(self, phase: str, force: bool = False, file_done: int | None = None) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        fd = self.file_done if file_done is None else file_done
        done = self.done_before + (self.file_done if phase != "verify" else self.file_total)
        speed = self.transferred / max(now - self.t0, 1e-6)
        eta = (self.total - done) / speed if speed > 0 and phase == "download" else None
        self.progress(DownloadProgress(self.repo, self.file, self.index, self.n_files, phase, min(done, self.total),
                                       self.total, fd, self.file_total, speed, eta))


def _tqdm_for(tracker: _Tracker) -> type:
    """A tqdm stand-in for huggingface_hub's http_get: it only calls update(n) inside a with-block."""

    class _Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.n = kwargs.get("initial", 0) or 0
            tracker.file_done = self.n  # 0 again if the server ignored our Range and sends it all

        def __enter__(self) -> "_Bar":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def update(self, n: int = 1) -> None:
            self.n += n
            if n > 0:
                tracker.add(n)
            else:  # http_get rewinds when a server ignores Range; count from the start again
                tracker.file_done += n

        def close(self) -> None:
            pass

    return _Bar


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return h.hexdigest()


def _free_bytes(path: Path) -> int:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def download_model(ref: str | HubRef, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                   cache: Path | None = None, progress_interval_s: float = 0.1) -> DownloadResult:
    """Download REPO:QUANT (all split parts) into the HF cache; returns the snapshot paths."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    require_online(f"downloading {r}")
    cache = cache or hf_cache_dir()
    _, listing, group = remote_group(r)
    commit = listing.commit
    if not commit:
        raise HubError(f"{r.repo}: the hub did not give the commit of {listing.revision}")
    return _download_group(r.repo, listing.revision, commit, group, progress, cancel, cache, progress_interval_s)


def _download_group(repo: str, revision: str, commit: str, group: QuantGroup, progress: ProgressFn | None,
                    cancel: threading.Event | None, cache: Path, interval_s: float) -> DownloadResult:
    import httpx2  # heavy (with huggingface_hub): only when something is downloaded
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock

    t0 = time.monotonic()
    pointers = [pointer_path(repo, commit, f.path, cache) for f in group.files]
    cached = sum(f.size for f, p in zip(group.files, pointers) if p.is_file())
    # Disk check before the first byte: everything still missing, minus what partial files already hold.
    pending = [(f, p) for f, p in zip(group.files, pointers) if not p.is_file()]
    partial_bytes = sum(_partial_size(repo, f, cache) for f, _ in pending)
    need = sum(f.size for f, _ in pending) - partial_bytes
    free = _free_bytes(repo_dir(repo, cache))
    if pending and need + DISK_MARGIN > free:
        raise HubError(f"not enough disk space for {repo}:{group.quant}: needs {gib_fixed(need)} more, "
                       f"{gib_fixed(free)} free in {cache}")

    tracker = _Tracker(repo, len(group.files), group.size_bytes, cached, progress, cancel, interval_s)
    resumed = 0
    verified: list[str] = []
    headers = auth_headers()
    for index, (f, pointer) in enumerate(zip(group.files, pointers)):
        if pointer.is_file():
            continue
        url = hf_hub_url(repo, f.path, revision=commit, endpoint=endpoint())
        hdrs = dict(headers)
        lim = net_limits()
        with hub_errors(f"downloading {repo}/{f.path}"):
            meta = call_with_deadline(lambda: get_hf_file_metadata(url, headers=hdrs, timeout=lim.total_s),
                                      what=f"downloading {repo}/{f.path}", host=host_of(url), limits=lim)
        etag = meta.etag or f.sha256
        if not etag:
            raise HubError(f"{repo}/{f.path}: the hub gave no ETag for the file")
        if not _SAFE_ETAG.fullmatch(etag) or set(etag) == {"."}:  # it names the blob file: no path in it
            raise ServerClaimError(host_of(url), f"ETag of {f.path}", f"{etag[:40]!r} is not a blob id")
        size = check_size(host_of(url), f"size of {f.path}", meta.size) if meta.size is not None else f.size
        expected_sha = f.sha256 or (etag if _is_sha256(etag) else None)
        blob = blob_path(repo, etag, cache)
        blob.parent.mkdir(parents=True, exist_ok=True)
        lock = repo_dir(repo, cache).parent / ".locks" / repo_dir(repo, cache).name / f"{etag}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(str(lock)):  # the same lock hf_hub_download takes: never two writers per blob
            if not blob.exists():
                partial = blob.with_name(blob.name + ".incomplete")
                already = partial.stat().st_size if partial.exists() else 0
                if already > size:
                    partial.unlink()
                    already = 0
                resumed += already
                tracker.start_file(index, f, already)
                tracker.emit("download", force=True)
                location = urljoin(url, meta.location) if meta.location else url
                dl_headers = dict(hdrs)
                if not _same_host(location, url):
                    dl_headers.pop("authorization", None)
                    dl_headers.pop("Authorization", None)
                with hub_errors(f"downloading {repo}/{f.path}"):
                    try:
                        with open(partial, "ab") as fh, _read_deadline(lim.total_s):
                            http_get(location, _CappedFile(fh, size, f"downloading {repo}/{f.path}", host_of(location)),
                                     resume_size=already, headers=dl_headers, expected_size=size,
                                     displayed_filename=f.path, tqdm_class=_tqdm_for(tracker), **_retries())
                    except ValueError as exc:  # http_get refuses plain-HTTP files over 50 GB (hub parts are smaller)
                        raise HubError(f"downloading {repo}/{f.path}: {first_line(exc)}") from exc
                    except httpx2.TimeoutException as exc:
                        raise HubError(f"downloading {repo}/{f.path}: {host_of(location)} sent nothing for "
                                       f"{lim.total_s:g} s, twice (a stalled server or network; MOETUI_NET_TIMEOUT "
                                       "sets the deadline); what arrived is kept: run it again to resume") from exc
                    except OSError as exc:
                        if isinstance(exc, httpx2.HTTPError):
                            raise  # hub_errors words it
                        # a size mismatch from http_get, or the disk filled up: the partial stays for a resume
                        raise HubError(f"downloading {repo}/{f.path}: {first_line(exc)}") from exc
                _verify(partial, expected_sha, size, f, repo, tracker)
                if expected_sha:
                    verified.append(f.path)
                os.chmod(partial, 0o644 & ~_umask())
                os.replace(partial, blob)
            link_pointer(blob, pointer)
        tracker.done_before += f.size
        tracker.file_done = 0
    write_ref(repo, revision, commit, cache)
    tracker.file_done = 0
    tracker.emit("done", force=True, file_done=0)
    return DownloadResult(repo, group.quant, commit, pointers, group.size_bytes, tracker.transferred, resumed,
                          cached, time.monotonic() - t0, verified)


def _retries() -> dict[str, int]:
    """One retry (not huggingface_hub's five) of a read that brought nothing: a dead server ends a download
    within two deadlines. http_get goes back to five tries as soon as bytes arrive, so a flaky link that
    drops now and then still resumes within the same run."""
    from huggingface_hub.file_download import http_get  # heavy: only when something is downloaded

    return {"_nb_retries": 1} if "_nb_retries" in inspect.signature(http_get).parameters else {}


class _CappedFile:
    """The partial file as http_get writes it, refusing bytes beyond the size the hub announced: a server
    that sends an endless body fills no disk."""

    def __init__(self, fh: Any, size: int, what: str, host: str) -> None:
        self._fh, self._size, self._what, self._host = fh, size, what, host

    def write(self, data: bytes) -> int:
        if self._fh.tell() + len(data) > self._size:
            raise HubError(f"{self._what}: {self._host} sent more than the {self._size:,} bytes the file has; "
                           "the bytes past its end were not written")
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:  # tell, seek, truncate: the file's own
        return getattr(self._fh, name)


@contextlib.contextmanager
def _read_deadline(seconds: float) -> Iterator[None]:
    """huggingface_hub's http_get waits HF_HUB_DOWNLOAD_TIMEOUT for each read: the user's deadline
    (MOETUI_NET_TIMEOUT) while moetui downloads."""
    from huggingface_hub import constants  # heavy: only when something is downloaded

    before = constants.HF_HUB_DOWNLOAD_TIMEOUT
    constants.HF_HUB_DOWNLOAD_TIMEOUT = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = before


def _verify(partial: Path, expected_sha: str | None, size: int, f: RemoteFile, repo: str, tracker: _Tracker) -> None:
    got_size = partial.stat().st_size
    if got_size != size:
        partial.unlink(missing_ok=True)
        raise HubError(f"{repo}/{f.path}: downloaded {got_size:,} bytes, expected {size:,}; the partial file was deleted")
    if not expected_sha:
        return
    hashed = 0

    def on_bytes(n: int) -> None:
        nonlocal hashed
        hashed += n
        tracker.emit("verify", file_done=hashed)

    got = sha256_file(partial, on_bytes)
    if got != expected_sha:
        partial.unlink(missing_ok=True)
        raise HubError(f"{repo}/{f.path}: sha256 mismatch (hub says {expected_sha[:16]}…, file has {got[:16]}…); "
                       f"the file was deleted from the cache, download it again")


def _partial_size(repo: str, f: RemoteFile, cache: Path) -> int:
    if not f.sha256:
        return 0
    partial = blob_path(repo, f.sha256, cache).with_name(f.sha256 + ".incomplete")
    return partial.stat().st_size if partial.exists() else 0


def _is_sha256(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def _same_host(a: str, b: str) -> bool:
    return urlparse(a).netloc == urlparse(b).netloc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
