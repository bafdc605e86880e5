"""A fake Hugging Face hub on 127.0.0.1 for tests (hub tests now, TUI tests later): the endpoints
huggingface_hub 2.x calls, serving real files, with faults to inject.

    hub = FakeHub()                      # starts the hub and a separate "CDN" origin, each in a thread
    hub.add_file("me/tiny-GGUF", "tiny-Q4_K_M.gguf", path)
    with hub.activate(monkeypatch, cache_dir): ...   # points HF_ENDPOINT / huggingface_hub at it
    hub.cut_after["tiny-Q4_K_M.gguf"] = 1 << 20      # first GET of that file dies after 1 MiB
    hub.wrong_sha.add("tiny-Q4_K_M.gguf")            # the hub advertises a sha256 the bytes do not have
    hub.stall_after["tiny-Q4_K_M.gguf"] = 1 << 20    # first GET sends 1 MiB, then hangs until hub.close()
    hub.log                                          # [(method, path, range header or None)]
    hub.auth_log                                     # [(path, Authorization header or None)]

Endpoints: GET /api/models/{repo}[/revision/{rev}] (model info; siblings with size + lfs when
?blobs=True), GET /api/models/{repo}/tree/{rev}[/path] (recursive listing), HEAD/GET
/{repo}/resolve/{rev}/{file} answering like the hub for LFS files: a 302 to the CDN origin carrying
X-Repo-Commit, X-Linked-Etag (the sha256), X-Linked-Size; the CDN honours Range (206 + Content-Range).
With redirect=False the resolve endpoint serves the bytes itself (ETag + Content-Length).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest


@dataclass
class _File:
    path: str
    local: Path
    size: int
    sha256: str


@dataclass
class _Repo:
    commit: str
    files: dict[str, _File] = field(default_factory=dict)


def sha256_of(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class FakeHub:
    def __init__(self, redirect: bool = True) -> None:
        self.repos: dict[str, _Repo] = {}
        self.redirect = redirect
        self.cut_after: dict[str, int] = {}  # file path -> bytes sent before the first GET's socket closes
        self.wrong_sha: set[str] = set()  # file paths whose advertised sha256 is wrong
        self.stall_after: dict[str, int] = {}  # file path -> bytes sent before the first GET hangs (until close)
        # file path -> bytes sent before every GET to the end of the file (a download, not a header read) hangs
        self.stall_downloads: dict[str, int] = {}
        # file path -> how every ranged GET of it goes wrong: "short" (half the bytes, said so in the
        # headers), "shifted" (another range, said so in Content-Range), "lying" (another range, the
        # Content-Range claiming the one asked for), "ignored" (200 with the whole file)
        self.range_fault: dict[str, str] = {}  # also "trickle": a byte every trickle_s seconds (hub_faults.py)
        self.trickle_s = 1.0
        self.listing_fault: str | None = None  # a hostile model-info answer: hub_faults.LISTING_FAULTS
        self._closing = threading.Event()
        self.log: list[tuple[str, str, str | None]] = []
        self.auth_log: list[tuple[str, str | None]] = []  # (path, Authorization header or None)
        self.bytes_sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._hub = self._serve()
        self._cdn = self._serve()
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"

    # -- content ---------------------------------------------------------------------------------------

    def add_file(self, repo: str, path: str, local: Path, commit: str | None = None) -> None:
        r = self.repos.setdefault(repo, _Repo(commit or hashlib.sha1(repo.encode()).hexdigest()))
        r.files[path] = _File(path, Path(local), Path(local).stat().st_size, sha256_of(Path(local)))
        # a new file is a new commit, as on the hub
        r.commit = commit or hashlib.sha1((r.commit + path).encode()).hexdigest()

    def advertised_sha(self, f: _File) -> str:
        return hashlib.sha256(b"not these bytes" + f.sha256.encode()).hexdigest() if f.path in self.wrong_sha else f.sha256

    def _find_blob(self, sha: str) -> _File | None:
        for r in self.repos.values():
            for f in r.files.values():
                if self.advertised_sha(f) == sha:
                    return f
        return None

    # -- lifecycle -------------------------------------------------------------------------------------

    def _serve(self) -> ThreadingHTTPServer:
        hub = self

        class Handler(_Handler):
            fake = hub

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
                import sys

                if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up mid-body is normal
                    super().handle_error(request, client_address)

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def release_stalls(self) -> None:
        """Stalled responses end now (their connection closes): a hung download fails as a cut one."""
        self.stall_downloads.clear()
        self._closing.set()

    def close(self) -> None:
        self._closing.set()  # releases stalled responses
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()

    @contextlib.contextmanager
    def activate(self, monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> Iterator["FakeHub"]:
        """Point huggingface_hub (already imported, so its constants are patched too) at this hub, online."""
        from huggingface_hub import constants
        from huggingface_hub.utils import _http

        monkeypatch.setenv("HF_ENDPOINT", self.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
        monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token")
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
        # huggingface_hub caches the hub's agent registry under HF_HOME: keep it out of the real home
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(Path(cache_dir).parent / ".agent_harnesses.json"),
                            raising=False)
        _http.close_session()  # connections to an earlier test's server must not be reused
        yield self


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _record(self) -> None:
        with self.fake._lock:
            self.fake.log.append((self.command, urlsplit(self.path).path, self.headers.get("Range")))
            self.fake.auth_log.append((urlsplit(self.path).path, self.headers.get("Authorization")))

    def do_HEAD(self) -> None:
        self._record()
        self._route(head=True)

    def do_GET(self) -> None:
        self._record()
        self._route(head=False)

    # -- routing ---------------------------------------------------------------------------------------

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        parts = path.strip("/").split("/")
        if parts[0] == "cdn" and len(parts) == 2:
            f = self.fake._find_blob(parts[1])
            return self._send_file(f, head, extra={}) if f else self._error(404, "EntryNotFound")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            repo = self.fake.repos.get(repo_id)
            if repo is None:
                return self._error(401, "RepoNotFound")
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                return self._model_info(repo_id, repo, query)
            if rest[0] == "tree":
                return self._tree(repo, "/".join(rest[2:]))
            return self._error(404, "")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = "/".join(parts[:2])
            repo = self.fake.repos.get(repo_id)
            if repo is None:
                return self._error(401, "RepoNotFound")
            file = repo.files.get("/".join(parts[4:]))
            if file is None:
                return self._error(404, "EntryNotFound", {"X-Repo-Commit": repo.commit})
            sha = self.fake.advertised_sha(file)
            meta = {"X-Repo-Commit": repo.commit, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(file.size),
                    "ETag": f'"{sha}"'}
            if self.fake.redirect:
                self.send_response(302)
                for k, v in meta.items():
                    self.send_header(k, v)
                self.send_header("Location", f"{self.fake.cdn_url}/cdn/{sha}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._send_file(file, head, extra=meta)
        return self._error(404, "")

    def _model_info(self, repo_id: str, repo: _Repo, query: dict) -> None:
        with_blobs = query.get("blobs", ["False"])[0].lower() == "true"
        siblings = []
        for f in repo.files.values():
            s: dict = {"rfilename": f.path}
            if with_blobs:
                s.update(size=f.size, blobId=hashlib.sha1(f.path.encode()).hexdigest(),
                         lfs={"size": f.size, "sha256": self.fake.advertised_sha(f), "pointerSize": 134})
            siblings.append(s)
        info = {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False, "gated": False,
                "tags": ["gguf"], "siblings": siblings}
        if self.fake.listing_fault:
            from hub_faults import serve_listing_fault

            return serve_listing_fault(self, self.fake.listing_fault, info)
        self._json(info)

    def _tree(self, repo: _Repo, prefix: str) -> None:
        entries = []
        for f in repo.files.values():
            if prefix and not f.path.startswith(prefix.rstrip("/") + "/"):
                continue
            entries.append({"type": "file", "path": f.path, "size": f.size,
                            "oid": hashlib.sha1(f.path.encode()).hexdigest(),
                            "lfs": {"oid": self.fake.advertised_sha(f), "size": f.size, "pointerSize": 134}})
        self._json(entries)

    # -- responses -------------------------------------------------------------------------------------

    def _json(self, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, extra: dict | None = None) -> None:
        body = json.dumps({"error": code or "not found"}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, f: _File, head: bool, extra: dict) -> None:
        start, end = 0, f.size - 1
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[len("bytes="):].partition("-")
            start = int(a) if a else 0
            end = min(int(b), f.size - 1) if b else f.size - 1
        fault = self.fake.range_fault.get(f.path) if rng and not head else None
        claimed = (start, end)
        if fault == "short":
            end = start + max(0, (end - start) // 2)
            claimed = (start, end)
        elif fault in ("shifted", "lying"):
            delta = 7 if start + 7 <= f.size - 1 else -min(start, 7)
            start, end = start + delta, min(end + delta, f.size - 1)
            claimed = (start, end) if fault == "shifted" else claimed
        elif fault == "ignored":
            rng, start, end = None, 0, f.size - 1
        length = max(end - start + 1, 0)
        self.send_response(206 if rng else 200)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if rng:
            self.send_header("Content-Range", f"bytes {claimed[0]}-{claimed[1]}/{f.size}")
        self.end_headers()
        if head:
            return
        if fault == "trickle":
            from hub_faults import trickle

            with open(f.local, "rb") as fh:
                fh.seek(start)
                return trickle(self, fh.read(length))
        cut = stall = None
        with self.fake._lock:
            if f.path in self.fake.cut_after:
                cut = self.fake.cut_after.pop(f.path)  # only the first GET is cut
            if f.path in self.fake.stall_after:
                stall = cut = self.fake.stall_after.pop(f.path)  # only the first GET stalls
            elif (not rng or rng.endswith("-")) and f.path in self.fake.stall_downloads:  # to the end: a download
                stall = cut = self.fake.stall_downloads[f.path]
        sent = 0
        with open(f.local, "rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                n = min(left, 64 << 10)
                if cut is not None:
                    n = min(n, cut - sent)
                    if n <= 0:
                        break
                chunk = fh.read(n)
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
                left -= len(chunk)
        with self.fake._lock:
            self.fake.bytes_sent[f.path] = self.fake.bytes_sent.get(f.path, 0) + sent
        if cut is None:
            return
        try:
            self.wfile.flush()
            if stall is not None:
                self.fake._closing.wait(60)  # a network that stops answering: the client waits, or is interrupted
            self.close_connection = True
            self.connection.shutdown(2)  # drop the connection mid-body, as a flaky network does
        except OSError:
            pass  # the client hung up first


# -- a split GGUF, as llama.cpp's gguf-split writes one ------------------------------------------------

def write_split_proxy(directory: Path, stem: str, shape_name: str = "qwen3-30b-a3b", mix: str = "Q4_K_M",
                      n_parts: int = 2) -> list[Path]:
    """A tiny proxy split into N files named STEM-0000i-of-0000N.gguf: the first holds the metadata, every
    file has its own tensor infos and data, and each carries split.no / split.count / split.tensors.count
    (u16 / u16 / i32, the types llama.cpp checks)."""
    import struct

    from gguf import GGUFValueType

    from moetui.model.gguf_writer import ALIGNMENT, _pack_string, _pack_value
    from moetui.model.proxy import metadata_for, plan_tensors
    from moetui.model.shapes import load_shape, scaled

    shape = scaled(load_shape(shape_name), "tiny")
    tensors = plan_tensors(shape, mix)
    per = -(-len(tensors) // n_parts)
    chunks = [tensors[i * per:(i + 1) * per] for i in range(n_parts)]
    paths = []
    for no, chunk in enumerate(chunks):
        md = metadata_for(shape, mix) if no == 0 else {}
        kv = bytearray()
        for key, value in md.items():
            vtype, body = _pack_value(value)
            kv += _pack_string(key) + struct.pack("<I", vtype) + body
        kv += _pack_string("split.no") + struct.pack("<IH", GGUFValueType.UINT16, no)
        kv += _pack_string("split.count") + struct.pack("<IH", GGUFValueType.UINT16, n_parts)
        kv += _pack_string("split.tensors.count") + struct.pack("<Ii", GGUFValueType.INT32, len(tensors))
        head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(chunk), len(md) + 3)) + kv
        offset = 0
        for t in chunk:
            head += _pack_string(t.name) + struct.pack("<I", len(t.shape)) + struct.pack(f"<{len(t.shape)}Q", *t.shape)
            head += struct.pack("<IQ", int(t.type), offset)
            offset += -(-t.nbytes // ALIGNMENT) * ALIGNMENT
        head += b"\0" * ((-len(head)) % ALIGNMENT)
        path = Path(directory) / f"{stem}-{no + 1:05d}-of-{n_parts:05d}.gguf"
        with open(path, "wb") as fh:
            fh.write(head)
            for t in chunk:
                t.write(fh.write, t.nbytes)
                fh.write(b"\0" * ((-t.nbytes) % ALIGNMENT))
        paths.append(path)
    return paths


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A running fake hub that huggingface_hub and moetui talk to, with an empty HF cache at tmp/hf-cache.
    Import it into a test module: `from hub_server import fake_hub  # noqa: F401`."""
    hub = FakeHub()
    try:
        with hub.activate(monkeypatch, tmp_path / "hf-cache"):
            yield hub
    finally:
        hub.close()


@pytest.fixture(scope="session")
def big_vocab_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny layers with Qwen3's real vocabulary (151,936 tokens): a 3 MB header in front of ~60 MB of
    weights, large enough that huggingface_hub streams it in several 10 MB chunks."""
    import dataclasses

    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape, scaled

    path = tmp_path_factory.mktemp("bigvocab") / "bigvocab-Q4_K_M.gguf"
    write_proxy(dataclasses.replace(scaled(load_shape("qwen3-30b-a3b"), "tiny"), n_vocab=151_936), path)
    return path
