"""`moetui serve` and the Serve screen: llama.cpp's own llama-server, started from the exported line
(moetui.export.commandline) and supervised: a free port, /health awaited, the server's own words when it
fails, restarts with backoff when it dies, and no process left behind.

One thread owns the server process for its whole life (`ServerSupervisor._run`): it starts it, waits for
it, and starts it again after a crash. It is also the thread that spawned it, which matters on Linux: the
child asks for SIGTERM when its parent thread ends (PR_SET_PDEATHSIG), so even a moetui killed with
SIGKILL leaves no llama-server running. `stop()` (also run at exit) ends it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moetui.config import RunConfig
from moetui.errors import MoetuiError
from moetui.export.commandline import server_command
from moetui.export.flags import FlagsError, ToolFlags, flags_from_binary
from moetui.export.llama_tools import LlamaToolsError, ensure_llama_tools
from moetui.paths import atomic_write_text, data_dir

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# what moetui needs of a llama-server: older releases lack one or the other
NEEDED_FLAGS = ("--metrics", "--alias", "--host", "--port", "-np")
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0)
STABLE_S = 60.0  # up this long: an earlier crash no longer counts against the restart limit
HEALTH_POLL_S = 0.25


class ServeError(MoetuiError):
    """llama-server could not be started or kept running (port in use, no binary, load failed, gave up)."""


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    api_key: str | None = None
    binary: str | None = None  # a llama-server; default: the one on PATH, else moetui's build
    max_restarts: int = 3  # crashes in a row (each within STABLE_S of the last start) before giving up
    ready_timeout_s: float = 1800.0  # a big model from a slow disk takes minutes
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # what a client on this machine connects to (a wildcard bind is reached on 127.0.0.1)
    host: str  # what the server binds
    port: int
    model: str  # the name clients send ("model": ...), also what /v1/models lists
    api_key: str | None
    pid: int
    binary: str
    version: str  # which llama-server, in words

    @property
    def openai_url(self) -> str:
        return self.base_url + "/v1"


@dataclass(frozen=True)
class ServerEvent:
    """What the supervisor saw: starting, ready, died, restarting, gave_up, stopped."""

    kind: str
    message: str
    attempt: int = 0
    at: float = field(default_factory=time.time)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def stored_api_key(create: bool = True) -> tuple[str | None, bool]:
    """moetui's serve API key (data dir, file mode 0600) and whether it was made just now."""
    path = data_dir() / "serve-api-key"
    try:
        key = path.read_text().strip()
        if key:
            return key, False
    except OSError:
        pass
    if not create:
        return None, False
    key = "moetui-" + secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, key + "\n")
    path.chmod(0o600)
    return key, True


def api_key_path() -> Path:
    return data_dir() / "serve-api-key"


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise ServeError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
    return True


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_flags(binary: str | None, out=sys.stderr) -> ToolFlags:  # type: ignore[no-untyped-def]
    """The llama-server to run: `binary`, else one on PATH, else moetui's build of the vendored llama.cpp
    (built on first use, minutes). Refuses one too old to serve with live stats."""
    try:
        if binary:
            flags = flags_from_binary("server", binary)
        elif shutil.which("llama-server"):
            flags = flags_from_binary("server", shutil.which("llama-server"))  # type: ignore[arg-type]
        else:
            built = ensure_llama_tools(["llama-server"], out=out)
            flags = flags_from_binary("server", built / "llama-server")
    except (FlagsError, LlamaToolsError) as exc:
        raise ServeError(f"no usable llama-server: {exc}") from None
    missing = [f for f in NEEDED_FLAGS if not flags.has(f)]
    if missing:
        raise ServeError(f"{flags.binary} is too old to serve with moetui: its --help has no {', '.join(missing)} "
                         f"({flags.target}); remove it from PATH or pass a newer one, and moetui uses its own build")
    return flags


_ERROR_PATTERNS = (
    re.compile(r"error loading model: (.+)"),
    re.compile(r"couldn't bind HTTP server socket.*"),
    re.compile(r"\berror: (.+)"),
    re.compile(r"(failed to load model.*)"),
)


def server_error(log_text: str) -> str:
    """The server's own reason for failing, from its log: the first line that says what went wrong."""
    for pattern in _ERROR_PATTERNS:
        for line in log_text.splitlines():
            m = pattern.search(line)
            if m:
                return (m.group(1) if m.groups() else m.group(0)).strip()
    tail = [ln for ln in log_text.splitlines() if ln.strip()][-3:]
    return " | ".join(tail) or "no output"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the spawning thread's end ends us
    except (OSError, AttributeError):
        pass


def _get(url: str, timeout: float = 5.0, api_key: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ServerSupervisor:
    def __init__(self, cfg: RunConfig, options: ServeOptions | None = None,
                 on_event: Callable[[ServerEvent], None] | None = None, flags: ToolFlags | None = None) -> None:
        self.cfg = cfg
        self.options = options or ServeOptions()
        self.on_event = on_event or (lambda ev: None)
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint: Endpoint | None = None
        self.events: list[ServerEvent] = []
        self.restarts = 0
        self.gave_up: str | None = None
        self._stopping = threading.Event()
        self._first = threading.Event()
        self._first_error: str | None = None
        self._thread: threading.Thread | None = None
        self._log_start = 0
        self.log_path = self.options.log_path or (data_dir() / "logs" / "llama-server.log")

    # --- what runs -------------------------------------------------------------------------------
    def argv(self, port: int) -> list[str]:
        assert self.flags is not None
        line = server_command(self.cfg, self.flags).argv
        return [*line, "--host", self.options.host, "--port", str(port), "--metrics", "--alias", self.model_name(),
                *self.options.extra_args]

    def model_name(self) -> str:
        return Path(self.cfg.model_path).stem

    def _emit(self, kind: str, message: str, attempt: int = 0) -> None:
        ev = ServerEvent(kind, message, attempt)
        self.events.append(ev)
        self.on_event(ev)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Endpoint:
        """Start llama-server and wait until it answers /health; raises ServeError with its reason."""
        o = self.options
        if not is_loopback(o.host) and not o.api_key:
            raise ServeError(f"serving on {o.host} (not this machine only) needs an API key")
        if self.flags is None:
            self.flags = server_flags(o.binary)
        if o.port and not port_free(o.host, o.port):
            raise ServeError(f"port {o.port} on {o.host} is in use: pick another with --port, or leave --port "
                             "out for a free one")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        self._thread = threading.Thread(target=self._run, name="llama-server", daemon=True)
        self._thread.start()
        self._first.wait()
        if self._first_error is not None:
            self.stop()
            raise ServeError(self._first_error)
        assert self.endpoint is not None
        return self.endpoint

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if self.options.api_key:
            env["LLAMA_API_KEY"] = self.options.api_key  # not on the command line, where `ps` shows it
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- moetui: starting {' '.join(self.argv(port))}\n".encode())
            log.flush()
            return subprocess.Popen(self.argv(port), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True,  # Ctrl+C reaches moetui, which stops it
                                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def _wait_ready(self, proc: subprocess.Popen[bytes], base: str, log_start: int) -> str | None:
        """None once /health says ok; else why not (the server's own error)."""
        deadline = time.monotonic() + self.options.ready_timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            if proc.poll() is not None:
                return f"llama-server exited ({proc.returncode}): {server_error(self._log_since(log_start))}"
            try:
                status, body = _get(base + "/health", timeout=2)
                if status == 200 and json.loads(body or b"{}").get("status") == "ok":
                    return None
            except (OSError, ValueError):
                pass
            time.sleep(HEALTH_POLL_S)
        return "stopped" if self._stopping.is_set() else f"llama-server not ready in {self.options.ready_timeout_s:.0f} s"

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _launch(self) -> str | None:
        """One start until ready; None on success, else why it failed."""
        o = self.options
        port = (self.endpoint.port if self.endpoint else o.port) or free_port(o.host)
        connect = "127.0.0.1" if o.host in ("0.0.0.0", "::", "") else o.host
        base = f"http://{'[' + connect + ']' if ':' in connect else connect}:{port}"
        log_start = self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = self._spawn(port)
        self._emit("starting", f"llama-server (pid {self.proc.pid}) loading {Path(self.cfg.model_path).name} on {base}")
        why = self._wait_ready(self.proc, base, log_start)
        if why is None:
            assert self.flags is not None
            self.endpoint = Endpoint(base, o.host, port, self.model_name(), o.api_key, self.proc.pid,
                                     self.flags.binary, self.flags.target.replace(" (its --help read at export)", ""))
            self._emit("ready", f"serving {self.model_name()} at {base}/v1")
        return why

    def _run(self) -> None:
        why = self._launch()
        if why is not None and "couldn't bind" in why and not self.options.port and not self._stopping.is_set():
            why = self._launch()  # the free port was taken between our check and its bind: once more
        if why is not None:
            self._kill()
            self._first_error = why
            self._first.set()
            return
        self._first.set()
        crashes = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            assert self.proc is not None
            rc = self.proc.wait()
            if self._stopping.is_set():
                break
            crashes = 1 if time.monotonic() - started > STABLE_S else crashes + 1
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}: {server_error(self._log_since(self._log_start))}"
            self._emit("died", f"llama-server died ({how})", crashes)
            if crashes > self.options.max_restarts:
                self.gave_up = (f"llama-server died {crashes} times in a row, each within {STABLE_S:.0f} s of its "
                                f"start; gave up (log: {self.log_path})")
                self._emit("gave_up", self.gave_up, crashes)
                return
            delay = BACKOFF_S[min(crashes - 1, len(BACKOFF_S) - 1)]
            self._emit("restarting", f"restarting in {delay:.0f} s (attempt {crashes} of {self.options.max_restarts})",
                       crashes)
            if self._stopping.wait(delay):
                break
            self.restarts += 1
            why = self._launch()
            if why is not None and not self._stopping.is_set():
                self._emit("died", why, crashes)
                self._kill()
        self._emit("stopped", "llama-server stopped")

    def _kill(self, grace_s: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the group is the server (and its children)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Stop the server and the supervision; safe to call twice, from any thread, at exit."""
        self._stopping.set()
        self._kill()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def client_snippets(ep: Endpoint) -> dict[str, str]:
    """A ready-to-paste curl line and Python `openai` snippet for this endpoint."""
    key = ep.api_key or "none"  # the openai client wants some key; llama-server ignores it when it has none
    auth = f' -H "Authorization: Bearer {ep.api_key}"' if ep.api_key else ""
    body = json.dumps({"model": ep.model, "messages": [{"role": "user", "content": "Hello!"}]})
    curl = f"curl -s {ep.openai_url}/chat/completions -H 'Content-Type: application/json'{auth} -d '{body}'"
    python = "\n".join([
        "from openai import OpenAI",
        f'client = OpenAI(base_url="{ep.openai_url}", api_key="{key}")',
        f'reply = client.chat.completions.create(model="{ep.model}", '
        'messages=[{"role": "user", "content": "Hello!"}])',
        "print(reply.choices[0].message.content)",
    ])
    return {"curl": curl, "python": python}
