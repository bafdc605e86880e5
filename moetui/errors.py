"""Typed exceptions and the one vocabulary for what went wrong. Every error a user can cause is a
MoetuiError: the CLI prints its message on one line and exits 2; the TUI shows it as a notification.
Anything else is a bug. A model worker's failures (and a tuner probe's) carry an ErrorKind, decided in
one place: classify_failure."""

from __future__ import annotations

import re
from enum import StrEnum


class ErrorKind(StrEnum):
    """What went wrong. A str, so it is written to JSON (worker protocol, saved failures) as its value."""

    CRASH = "crash"  # the worker process died (a signal, llama.cpp's abort(), an exit)
    OOM = "oom"  # out of memory: the worker died of it, or llama.cpp said so while loading
    HANG = "hang"  # no progress within the stall or request timeout: the worker was killed
    LOAD = "load"  # the model file would not load
    CONTEXT = "context"  # llama.cpp would not create the context (batch, KV, flash attention settings)
    CONFIG = "config"  # a setting the worker refused
    DRAFT_MISMATCH = "draft_mismatch"  # the draft model's vocabulary is not the target's
    STATE = "state"  # asked of a worker that has no model or is not running
    PROTOCOL = "protocol"  # the worker's reply was missing or incomplete
    RPC = "rpc"  # an RPC server (another host's backend) is down, refused, busy, or stopped answering
    ERROR = "error"  # any other error the worker reported
    # a tuner probe that was not measured for a reason of its own
    HEADROOM = "headroom"  # it measured, but left less free memory than the margin asks
    FAILED_BEFORE = "failed_before"  # the same settings failed in an earlier tune on this rig
    CANCELLED = "cancelled"
    BUDGET = "budget"  # the tune's time budget ran out while it loaded or measured (not a hang)

    @property
    def words(self) -> str:
        """The kind as a person reads it ("failed_before" -> "failed in an earlier tune")."""
        return _KIND_WORDS.get(self, self.value.replace("_", " "))

    @classmethod
    def parse(cls, value: object) -> "ErrorKind":
        """The kind a worker or a saved file names; ERROR for one this version does not know."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.ERROR


_KIND_WORDS = {
    ErrorKind.CRASH: "crashed", ErrorKind.OOM: "out of memory", ErrorKind.HANG: "stopped responding",
    ErrorKind.LOAD: "would not load", ErrorKind.CONTEXT: "context refused", ErrorKind.CONFIG: "setting refused",
    ErrorKind.DRAFT_MISMATCH: "draft model does not match", ErrorKind.STATE: "no model running",
    ErrorKind.PROTOCOL: "no proper reply", ErrorKind.RPC: "remote host failed", ErrorKind.ERROR: "failed",
    ErrorKind.HEADROOM: "left too little free memory", ErrorKind.FAILED_BEFORE: "failed in an earlier tune",
    ErrorKind.CANCELLED: "cancelled", ErrorKind.BUDGET: "not measured: the time budget ran out",
}

# what llama.cpp and CUDA print when an allocation fails
OOM_WORDS = ("out of memory", "failed to allocate", "cudamalloc failed", "unable to allocate")
# kinds a log's OOM lines do not override: the cause is known and is not memory (a load error's own
# message is checked instead, where it carries the log's first error line)
_KNOWN_CAUSE = {ErrorKind.RPC, ErrorKind.HANG, ErrorKind.STATE, ErrorKind.LOAD, ErrorKind.CONFIG, ErrorKind.DRAFT_MISMATCH,
                ErrorKind.CANCELLED}


def _says_oom(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in OOM_WORDS)


def classify_failure(exc: BaseException | None = None, *, kind: ErrorKind | str | None = None,
                     log_tail: str = "") -> ErrorKind:
    """The kind of a model worker's failure. exc: the exception (raised in the worker, or as it reached
    the caller: a WorkerError keeps the kind it was given); kind: what is known already (the parent saw
    the worker die or stall, or the kind the worker reported); log_tail: the end of llama.cpp's log,
    whose allocation failures turn a crash or an error into OOM."""
    if kind is None and isinstance(exc, WorkerError):
        return ErrorKind.parse(exc.kind)
    if kind is not None:
        known = ErrorKind.parse(kind)
        return ErrorKind.OOM if known not in _KNOWN_CAUSE and _says_oom(log_tail) else known
    if isinstance(exc, RemoteHostError):
        return ErrorKind.RPC
    if isinstance(exc, DraftMismatch):
        return ErrorKind.DRAFT_MISMATCH
    if isinstance(exc, ConfigError):
        return ErrorKind.CONFIG
    message = str(exc) if exc is not None else ""
    if _says_oom(message) or _says_oom(log_tail):
        return ErrorKind.OOM  # a load that runs out of VRAM comes back as a load error
    if isinstance(exc, ModelFileError) or "Failed to load model" in message:
        return ErrorKind.LOAD
    if "llama_context" in message:
        return ErrorKind.CONTEXT
    return ErrorKind.ERROR


def first_line(exc: BaseException | str, limit: int | None = None) -> str:
    """The first non-blank line of an error message (at most `limit` characters); an exception with no
    message gives its type's name, so there is always something to show."""
    text = str(exc)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line and isinstance(exc, BaseException):
        line = type(exc).__name__
    return line[:limit] if limit is not None else line


# ---- llama.cpp's own words, without its source paths ----
# "/home/u/pip-build/vendor/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:566: " before an abort's message
_EXT = r"\.(?:cpp|cc|cu|c|hpp|h|mm|m)"
_SOURCE_PATH = re.compile(rf"(?:[A-Za-z]:)?[^\s:]*[/\\][^\s:]*{_EXT}(?=[:\s]|$)(?::\d+)*:?\s*|[\w.-]+{_EXT}:\d+:\s*")
_ABORT_LINE = re.compile(r"GGML_ASSERT|GGML_ABORT|\.(?:c|cc|cpp|cu|h|m):\d+:|terminate called|std::bad_alloc")
# aborts libggml's RPC client and its loader print, as a person reads them
_ABORT_WORDS = (
    ("Remote RPC server crashed or returned malformed response", "an RPC server crashed or sent a malformed answer"),
    ("Failed to connect to", "an RPC server refused the connection"),
    ("RPC handshake failed", "an RPC server failed the handshake (another protocol version?)"),
    ("std::bad_alloc", "llama.cpp ran out of memory (an answer or a file claimed sizes far too large)"),
)


def without_source_paths(line: str) -> str:
    """A llama.cpp log line with its C/C++ source paths taken out (they say where in llama.cpp's code,
    nothing a user can act on): ".../ggml-rpc.cpp:566: Remote RPC server crashed" -> "Remote RPC server crashed"."""
    return _SOURCE_PATH.sub("", line).strip()


def llama_abort_reason(log: str) -> str:
    """What llama.cpp said when it aborted, in moetui's words, from the end of its log ("" when it said
    nothing recognisable)."""
    lines = [ln for ln in log.splitlines() if ln.strip()]
    for line in reversed(lines):
        for raw, words in _ABORT_WORDS:
            if raw in line:
                return words
    for line in reversed(lines):
        if _ABORT_LINE.search(line):
            text = without_source_paths(line)
            return f"llama.cpp aborted: {text}" if text else "llama.cpp aborted"
    return ""


# ---- raw internals in words: what a socket, a driver library or a Python exception says, for a person ----
# errno values of a failed connection (negative ones are getaddrinfo's EAI_* codes, as httpx shows them)
_NET_ERRNO = {
    -2: "its name could not be looked up (no network connection, or no DNS)",
    -3: "its name could not be looked up just now (DNS did not answer; try again)",
    -5: "its name has no address (no network connection, or no DNS)",
    101: "the network is unreachable (no network connection)",
    104: "the connection was reset",
    110: "it did not answer in time",
    111: "it refused the connection (nothing listens there)",
    113: "there is no route to it (no network connection)",
}


def network_reason(exc: BaseException) -> str:
    """Why a connection failed, in words: "[Errno -2] Name or service not known" (a socket.gaierror, or the
    text httpx wraps it in) -> "its name could not be looked up (no network connection, or no DNS)"."""
    code = getattr(exc, "errno", None)
    if not isinstance(code, int):
        m = re.search(r"\[Errno (-?\d+)\]", str(exc))
        code = int(m.group(1)) if m else None
    if code in _NET_ERRNO:
        return _NET_ERRNO[code]
    text = str(exc).lower()
    if isinstance(exc, TimeoutError) or "timed out" in text or "timeout" in type(exc).__name__.lower():
        return _NET_ERRNO[110]
    if isinstance(exc, ConnectionRefusedError) or "refused" in text:
        return _NET_ERRNO[111]
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return _NET_ERRNO[-2]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return first_line(exc) or "the connection failed"


def in_words(exc: BaseException) -> str:
    """An exception as a person reads it: a MoetuiError's own message; a file or network error's reason in
    words; anything else (a bug) says it is unexpected, with the type kept for a bug report."""
    if isinstance(exc, MoetuiError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in ("ConnectError", "ConnectTimeout"):
        return f"cannot connect: {network_reason(exc)}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror[0].lower() + exc.strerror[1:]}"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"unexpected error ({type(exc).__name__}: {first_line(exc, 200)}); please report it"


class MoetuiError(Exception):
    """Base class: a problem the user can understand and act on."""


class RemoteHostError(MoetuiError):
    """Another host's backend (an RPC server) cannot be used: down, refusing, busy, or gone mid-run."""


class ModelFileError(MoetuiError):
    """The path is missing, a directory, truncated, not a GGUF, or its header is corrupt."""


class UnsupportedArchitecture(MoetuiError):
    """The GGUF's architecture is not one moetui knows how to take apart."""


class DoesNotFit(MoetuiError):
    """A model or configuration does not fit the memory available."""


class ConfigError(MoetuiError):
    """A configuration file or setting is invalid. `field`: the setting at fault (a Settings field name,
    "n_ctx", "vram_margin_bytes", ...), so a screen can mark the knob and the CLI can name the flag."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Cancelled(MoetuiError):
    """The user cancelled (a tune, the Best-config flow, a download): the one kind of "cancelled"; what was
    done so far is kept (the best probe, the partial file). Its ErrorKind is CANCELLED."""


class WorkerError(MoetuiError):
    """The model worker process failed: crash, abort, out of memory, hang. Carries llama.cpp's log tail."""

    def __init__(self, message: str, log_tail: str = "", kind: ErrorKind | str = ErrorKind.ERROR) -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.kind = ErrorKind.parse(kind)


class DraftMismatch(MoetuiError):
    """A draft model whose vocabulary differs from the target's."""


class HubError(MoetuiError):
    """The Hugging Face hub could not be reached, or a download failed its checks."""
