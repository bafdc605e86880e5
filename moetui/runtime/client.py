"""Parent side of the model worker: `ModelWorker` starts the child, sends requests and turns its replies
into event dataclasses. Whatever the child does (crash, abort, OOM kill, hang), the caller gets an
ErrorEvent or a MoetuiError carrying the tail of llama.cpp's log, never a dead app.

Thread-safety: one request at a time (a lock); `stop()` may be called from any thread (e.g. the UI
thread while a Textual worker thread iterates `generate`). No orphans: the child runs in its own session
(killed as a group), exits by itself when its parent goes away, and an atexit hook closes any worker
still running.

Longer than the house's 400 lines on purpose: it is the whole parent side of one process boundary (start,
requests, the stream of replies, stall and cancel timers, death classification) and every part of it
shares the one lock and reply queue; split, the protocol would be spread over modules that must change
together.

    with ModelWorker() as w:
        info = w.start(RunConfig(model_path="m.gguf"))
        for ev in w.generate("Hello", max_tokens=32):
            ...  # TokenEvent | StatsEvent | DoneEvent | ErrorEvent
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Union

from moetui.config import RunConfig
from moetui.errors import (ConfigError, DraftMismatch, ErrorKind, ModelFileError, MoetuiError, WorkerError,
                           classify_failure, llama_abort_reason, without_source_paths)
from moetui.paths import cache_dir
from moetui.runtime.bench import BenchResult
from moetui.runtime.stats import BufferSizes, LiveStats
from moetui.hardware.rpc import dead_server_message

LOG_TAIL_LINES = 40
KEEP_LOGS = 20


@dataclass
class LoadInfo:
    pid: int
    load_s: float
    n_vocab: int
    n_ctx: int
    n_ctx_train: int
    n_threads: int
    n_threads_batch: int
    buffers: BufferSizes
    draft_buffers: BufferSizes | None
    log_path: Path
    load_mode_fallback: str | None = None  # why the worker loaded with another load_mode than asked
    # the params llama.cpp was given, as the worker read them back (n_ctx, n_ubatch, type_k, no_host, ...)
    applied: dict[str, Any] = field(default_factory=dict)
    chat_template: str = ""  # which chat template chat turns use, in words (moetui.model.chat_template)


@dataclass
class TokenEvent:
    text: str


@dataclass
class StatsEvent:
    stats: LiveStats


@dataclass
class DoneEvent:
    text: str
    finish_reason: str | None
    cancelled: bool
    stats: LiveStats

    @property
    def acceptance(self) -> float | None:
        return self.stats.acceptance


@dataclass
class ErrorEvent:
    error: MoetuiError

    @property
    def message(self) -> str:
        return str(self.error)

    @property
    def kind(self) -> str:
        return getattr(self.error, "kind", "error")

    @property
    def log_tail(self) -> str:
        return getattr(self.error, "log_tail", "")


Event = Union[TokenEvent, StatsEvent, DoneEvent, ErrorEvent]

_live: "weakref.WeakSet[ModelWorker]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for w in list(_live):
        w.kill()


def _log_dir() -> Path:
    d = cache_dir() / "worker-logs"
    d.mkdir(parents=True, exist_ok=True)
    logs = sorted(d.glob("worker-*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:-KEEP_LOGS]:
        old.unlink(missing_ok=True)
    return d


@dataclass
class _Request:
    id: int
    events: "queue.Queue[dict[str, Any] | None]" = field(default_factory=queue.Queue)
    cancelled_at: float | None = None  # when stop() asked it to end


# A cancelled request that shows no progress for this long has a hung worker: it is killed, so Ctrl-C
# returns in seconds, not after the stall timeout (a live worker ends a reply at its next token).
CANCEL_GRACE_S = 10.0


class ModelWorker:
    """One model worker process. `stall_timeout`: seconds without progress (a token, a new phase, a
    reply) after which a request is declared hung and the worker killed; None: never."""

    def __init__(self, *, stall_timeout: float | None = 300.0, load_timeout: float | None = 900.0,
                 log_dir: Path | None = None) -> None:
        self.stall_timeout = stall_timeout
        self.load_timeout = load_timeout
        self.log_dir = log_dir
        self.proc: subprocess.Popen[str] | None = None
        self.log_path: Path | None = None
        self.load_info: LoadInfo | None = None
        self.config: RunConfig | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one request at a time
        self._write_lock = threading.Lock()
        self._current: _Request | None = None
        self._reader: threading.Thread | None = None
        self._ended_here = True  # the process (none yet) was ended by this client: close() or kill()

    # --- lifecycle ------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, config: RunConfig) -> LoadInfo:
        """Spawn the worker and load `config`. Raises ModelFileError, DraftMismatch, ConfigError or
        WorkerError (with the log tail); the worker is gone afterwards in every failure case."""
        if self.proc is not None:
            self.close()
        self.config = config
        log_dir = self.log_dir or _log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(self._ids)}.log"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moetui.runtime.worker_main", str(self.log_path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8", env=_child_env(),
                bufsize=1, start_new_session=True,  # own process group: a terminal Ctrl-C reaches only us
            )
        finally:
            log.close()
        self._ended_here = False
        _live.add(self)
        self._ready: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, args=(self.proc,), daemon=True, name="moetui-worker-reader")
        self._reader.start()
        try:
            ev = self._request_one({"op": "load", "config": config.to_dict()}, self.load_timeout, expect="loaded")
        except MoetuiError:
            self.kill()
            raise
        self.load_info = LoadInfo(
            pid=ev["pid"], load_s=ev["load_s"], n_vocab=ev["n_vocab"], n_ctx=ev["n_ctx"], n_ctx_train=ev["n_ctx_train"],
            n_threads=ev["n_threads"], n_threads_batch=ev["n_threads_batch"],
            buffers=BufferSizes.from_dict(ev["buffers"]),
            draft_buffers=BufferSizes.from_dict(ev["draft_buffers"]) if ev.get("draft_buffers") else None,
            log_path=self.log_path, load_mode_fallback=ev.get("load_mode_fallback"), applied=dict(ev.get("applied") or {}),
            chat_template=(ev.get("chat_template") or {}).get("label", ""),
        )
        if self.load_info.load_mode_fallback:
            self.config = config.replace(load_mode="mmap")  # what it runs with
        return self.load_info

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within `timeout`."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self.stop()
            try:
                self._write({"op": "shutdown"})
                proc.stdin.close()  # type: ignore[union-attr]
            except (OSError, ValueError):
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self._ended_here = True
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except (OSError, ValueError):
                pass
        _live.discard(self)

    def __enter__(self) -> "ModelWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        all_lines = text.splitlines()
        tail = all_lines[-lines:]
        # the line that says why (GGML_ASSERT, "error", "failed") may sit above a long backtrace: keep it
        key = [ln for ln in all_lines[:-lines][-2000:] if _KEY_LINE.search(ln)][-5:]
        return "\n".join(key + (["..."] if key else []) + tail)

    # --- requests -------------------------------------------------------------------------------------
    def generate(self, prompt: str, max_tokens: int = 256, **sampling: Any) -> Iterator[Event]:
        """Stream a completion. `sampling`: temperature (default 0: greedy), top_k, top_p, min_p,
        repeat_penalty, seed, stop (list of strings), n_threads, n_threads_batch, timeout (overall s)."""
        return self._stream({"op": "generate", "prompt": prompt, "max_tokens": max_tokens, **_sampling(sampling)},
                            sampling.get("timeout"))

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, **sampling: Any) -> Iterator[Event]:
        """Like generate, with the model's chat template applied to `messages` ({"role", "content"})."""
        return self._stream({"op": "chat", "messages": messages, "max_tokens": max_tokens, **_sampling(sampling)},
                            sampling.get("timeout"))

    def bench(self, n_prompt: int = 512, n_gen: int = 128, reps: int = 5, *, n_threads: int | None = None,
              n_threads_batch: int | None = None, timeout: float | None = None) -> BenchResult:
        ev = self._request_one({"op": "bench", "n_prompt": n_prompt, "n_gen": n_gen, "reps": reps,
                                "n_threads": n_threads, "n_threads_batch": n_threads_batch}, timeout, expect="bench")
        cfg = self.config
        return BenchResult(
            n_prompt=n_prompt, n_gen=n_gen, reps=reps, pp_tok_s=ev["pp_tok_s"], tg_tok_s=ev["tg_tok_s"],
            n_threads=ev["n_threads"], n_threads_batch=ev["n_threads_batch"], n_batch=ev["n_batch"], n_ubatch=ev["n_ubatch"],
            flash_attn=cfg.flash_attn if cfg else None, cache_type_k=cfg.cache_type_k if cfg else None,
            cache_type_v=cfg.cache_type_v if cfg else None,
        )

    def set_threads(self, n_threads: int | None, n_threads_batch: int | None = None) -> tuple[int, int]:
        """Change thread counts on the live context (no reload, no new context)."""
        ev = self._request_one({"op": "set_threads", "n_threads": n_threads, "n_threads_batch": n_threads_batch}, 60, "ok")
        if self.config:
            self.config = self.config.replace(n_threads=ev["n_threads"], n_threads_batch=ev["n_threads_batch"])
        return ev["n_threads"], ev["n_threads_batch"]

    def reconfigure(self, **settings: Any) -> BufferSizes:
        """Recreate the llama context with new context-level settings (n_ctx, n_batch, n_ubatch, flash_attn,
        cache_type_k/v, n_threads, n_threads_batch), keeping the loaded weights. Returns the new context's
        KV/compute buffer sizes. The KV cache starts empty."""
        allowed = {"n_ctx", "n_batch", "n_ubatch", "flash_attn", "cache_type_k", "cache_type_v", "n_threads", "n_threads_batch"}
        bad = set(settings) - allowed
        if bad:
            raise ConfigError(f"not a context-level setting: {', '.join(sorted(bad))}")
        if self.config is None:
            raise WorkerError("no model loaded", kind=ErrorKind.STATE)
        new_cfg = self.config.replace(**settings)  # validates
        keys = ("flash_attn", "cache_type_k", "cache_type_v")
        payload = {"settings": settings, "current": {k: getattr(self.config, k) for k in keys}}
        ev = self._request_one({"op": "reconfigure", **payload}, self.load_timeout, "ok")
        self.config = new_cfg
        return BufferSizes.from_dict(ev["buffers"])

    def debug(self, op: str, timeout: float | None = None, **kw: Any) -> dict[str, Any]:
        """Test-only requests: debug_sleep(seconds), debug_abort."""
        return self._request_one({"op": op, **kw}, timeout, "ok")

    def stop(self) -> None:
        """Cancel the request in flight (generation ends at the next token). Any thread."""
        cur = self._current
        if cur is not None and self.alive:
            if cur.cancelled_at is None:
                cur.cancelled_at = time.monotonic()
            try:
                self._write({"op": "cancel"})
            except (OSError, ValueError):
                pass

    # --- internals ------------------------------------------------------------------------------------
    def _write(self, req: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with self._write_lock:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()

    def _read_loop(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    continue
                cur = self._current
                if ev.get("ev") == "ready":
                    continue
                if cur is not None and ev.get("id") == cur.id:
                    cur.events.put(ev)
        except (OSError, ValueError):
            pass
        cur = self._current
        if cur is not None:
            cur.events.put(None)  # EOF: the worker died

    def _failure(self, kind: ErrorKind, message: str) -> WorkerError:
        tail = self.log_tail()
        if kind == ErrorKind.CRASH and self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            rc = self.proc.returncode
            if rc is not None and rc < 0:
                sig = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
                message = f"the model worker was killed by {sig}"
                if sig == "SIGKILL":
                    message += " (out of memory, or killed from outside)"
                elif sig == "SIGABRT":  # what it said, without the C++ source path it prints
                    message = llama_abort_reason(tail) or "llama.cpp aborted (GGML_ASSERT or similar)"
            elif rc is not None:
                message = f"the model worker exited unexpectedly (code {rc})"
        if classify_failure(kind=kind, log_tail=tail) == ErrorKind.OOM:
            kind, message = ErrorKind.OOM, message + ": out of memory"
        if self.config is not None and self.config.rpc_servers:  # name the RPC server that went away
            dead = dead_server_message(self.config.rpc_servers, message)
            if dead is None and "RPC server" in message:  # alive, but its answer made libggml abort
                dead = ErrorKind.RPC, f"rpc-server {', '.join(self.config.rpc_servers)}: {message}"
            kind, message = dead or (kind, message)
        return WorkerError(f"{message}; log: {self.log_path}", log_tail=tail, kind=kind)

    def _error_from(self, ev: dict[str, Any]) -> MoetuiError:
        msg, tail = ev.get("message", "worker error"), self.log_tail()
        kind = classify_failure(kind=ev.get("kind", ErrorKind.ERROR), log_tail=tail)
        if kind == ErrorKind.DRAFT_MISMATCH:
            return DraftMismatch(msg)
        if kind == ErrorKind.CONFIG:
            return ConfigError(msg)
        if kind == ErrorKind.LOAD:
            first = _first_error_line(tail)
            return ModelFileError(f"{msg}{': ' + first if first else ''} (log: {self.log_path})")
        return WorkerError(f"{msg} (log: {self.log_path})", log_tail=tail, kind=kind)

    def _events(self, req: dict[str, Any], timeout: float | None) -> Iterator[dict[str, Any]]:
        """Send one request and yield its raw events until a terminal one; raise on death or hang.
        Holds the request lock throughout."""
        if not self.alive:
            if self.proc is not None and not self._ended_here:
                # it died on its own before this request (a signal right after the spawn): a crash, not a
                # request made of a stopped worker
                raise self._failure(ErrorKind.CRASH, "the model worker died")
            raise WorkerError("the model worker is not running", self.log_tail(), kind=ErrorKind.STATE)
        with self._lock:
            rid = next(self._ids)
            cur = _Request(rid)
            self._current = cur
            finished = False
            try:
                try:
                    self._write({**req, "id": rid})
                except (BrokenPipeError, ConnectionResetError):  # it died before it could read the request
                    finished = True
                    raise self._failure(ErrorKind.CRASH, "the model worker died") from None
                start = last_progress = time.monotonic()
                last_key: tuple[Any, ...] | None = None
                stall = self.stall_timeout if req.get("op") not in ("load",) else self.load_timeout
                while True:
                    try:
                        ev = cur.events.get(timeout=0.25)
                    except queue.Empty:
                        ev = {"ev": "_tick"}
                    now = time.monotonic()
                    if ev is None:
                        finished = True
                        raise self._failure(ErrorKind.CRASH, "the model worker died")
                    if ev["ev"] == "_tick":
                        if not self.alive and not (self._reader and self._reader.is_alive()) and cur.events.empty():
                            finished = True  # died, and the reader is gone too: no EOF marker will come
                            raise self._failure(ErrorKind.CRASH, "the model worker died")
                        if cur.cancelled_at is not None and now - max(cur.cancelled_at, last_progress) > CANCEL_GRACE_S:
                            self.kill()
                            finished = True
                            raise self._failure(ErrorKind.HANG, f"the model worker did not stop within {CANCEL_GRACE_S:.0f} s "
                                                                "of being cancelled and was killed")
                        if stall is not None and now - last_progress > stall:
                            self.kill()
                            finished = True
                            raise self._failure(ErrorKind.HANG, f"the model worker made no progress for {stall:.0f} s and was killed")
                        if timeout is not None and now - start > timeout:
                            self.kill()
                            finished = True
                            raise self._failure(ErrorKind.HANG, f"the request took over {timeout:.0f} s; the worker was killed")
                        continue
                    if ev["ev"] == "stats":
                        key = (ev.get("phase"), ev.get("tokens"), ev.get("n_prompt"))
                        if key != last_key:
                            last_progress, last_key = now, key
                    else:
                        last_progress = now
                    if ev["ev"] == "error":
                        finished = True
                        raise self._error_from(ev)
                    terminal = ev["ev"] in ("done", "loaded", "bench", "ok", "bye")
                    finished = finished or terminal  # before yielding: the caller may stop iterating here
                    yield ev
                    if terminal:
                        return
            finally:
                if not finished and self.alive:
                    # the caller walked away mid-request: cancel and drain so the next request starts clean
                    self._drain(cur)
                self._current = None

    def _drain(self, cur: _Request, timeout: float = CANCEL_GRACE_S) -> None:
        """Cancel and wait for the request's end; a worker that does not answer (hung), or a second
        Ctrl-C while waiting, gets it killed."""
        try:
            self._write({"op": "cancel"})
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    ev = cur.events.get(timeout=0.25)
                except queue.Empty:
                    continue
                if ev is None or ev.get("ev") in ("done", "loaded", "bench", "ok", "bye", "error"):
                    return
        except KeyboardInterrupt:
            self.kill()
            raise
        self.kill()

    def _request_one(self, req: dict[str, Any], timeout: float | None, expect: str) -> dict[str, Any]:
        for ev in self._events(req, timeout):
            if ev["ev"] == expect:
                return ev
        raise WorkerError(f"the model worker gave no {expect!r} reply", self.log_tail(), kind=ErrorKind.PROTOCOL)

    def _stats(self, ev: dict[str, Any]) -> LiveStats:
        names = LiveStats.__dataclass_fields__
        s = LiveStats(**{k: v for k, v in ev.items() if k in names})
        if self.load_info is not None:
            s.weights_by_device = self.load_info.buffers.weights_by_device()
            s.experts_ram = self.load_info.buffers.experts_ram
            s.experts_vram = self.load_info.buffers.experts_vram
        return s

    def _stream(self, req: dict[str, Any], timeout: float | None) -> Iterator[Event]:
        try:
            for ev in self._events(req, timeout):
                kind = ev["ev"]
                if kind == "token":
                    yield TokenEvent(ev["text"])
                elif kind == "stats":
                    yield StatsEvent(self._stats(ev))
                elif kind == "done":
                    yield DoneEvent(ev["text"], ev.get("finish_reason"), bool(ev.get("cancelled")), self._stats(ev["stats"]))
        except MoetuiError as exc:
            yield ErrorEvent(exc)


_KEY_LINE = re.compile(r"GGML_ASSERT|error|failed|out of memory|abort", re.IGNORECASE)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # ggml attaches gdb for a backtrace on abort: slow, and it buries the assert message. Opt back in
    # with MOETUI_WORKER_BACKTRACE=1.
    if not env.get("MOETUI_WORKER_BACKTRACE"):
        env["GGML_NO_BACKTRACE"] = "1"
    return env


def _sampling(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed", "stop", "n_threads", "n_threads_batch")
    unknown = set(kw) - set(keys) - {"timeout"}
    if unknown:
        raise ConfigError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
    out = {k: kw[k] for k in keys if kw.get(k) is not None}
    out.setdefault("temperature", 0.0)
    return out


def _first_error_line(tail: str) -> str:
    for line in tail.splitlines():
        low = line.lower()
        if "error" in low or "failed" in low or "invalid" in low:
            return without_source_paths(line)
    return ""


def collect(events: Iterator[Event]) -> DoneEvent:
    """Run a stream to its end; raise its error. For scripts and tests."""
    done: DoneEvent | None = None
    for ev in events:
        if isinstance(ev, ErrorEvent):
            raise ev.error
        if isinstance(ev, DoneEvent):
            done = ev
    if done is None:
        raise WorkerError("the generation ended without a result", kind=ErrorKind.PROTOCOL)
    return done
