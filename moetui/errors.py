"""Typed exceptions. Every error a user can cause is a MoetuiError: the CLI prints its message on one
line and exits 2; the TUI shows it as a notification. Anything else is a bug."""

from __future__ import annotations


class MoetuiError(Exception):
    """Base class: a problem the user can understand and act on."""


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

    def __init__(self, message: str, log_tail: str = "", kind: str = "error") -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.kind = kind


class DraftMismatch(MoetuiError):
    """A draft model whose vocabulary differs from the target's."""


class HubError(MoetuiError):
    """The Hugging Face hub could not be reached, or a download failed its checks."""
