"""Typed exceptions and the one vocabulary for what went wrong. Every error a user can cause is a
MoetuiError: the CLI prints its message on one line and exits 2; the TUI shows it as a notification.
Anything else is a bug. A model worker's failures (and a tuner probe's) carry an ErrorKind, decided in
one place: classify_failure."""

from __future__ import annotations

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

    @classmethod
    def parse(cls, value: object) -> "ErrorKind":
        """The kind a worker or a saved file names; ERROR for one this version does not know."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.ERROR


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
    """A configuration file or setting is invalid."""


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
