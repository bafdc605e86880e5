"""The messages Chat's thread workers post to their screen (Textual's post_message is thread-safe, and
returns False once the screen is closing: the worker then winds down). Each carries the runtime's own
typed values, as the Tune screen's TunerEvent carries the tuner's events; ChatScreen.on_* handles them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from moetui.config import RunConfig
from moetui.errors import MoetuiError
from moetui.hub.download import DownloadProgress
from moetui.runtime.client import Event, LoadInfo, ModelWorker


@dataclass
class ModelLoadEnded(Message, bubble=False):
    """The load numbered `seq` ended: `worker` runs `config` (what it loaded in `info`), or `error` says why
    it did not. The screen keeps only the newest load's worker."""

    config: RunConfig
    seq: int
    worker: ModelWorker | None = None
    info: LoadInfo | None = None
    error: MoetuiError | None = None


@dataclass
class ReplyEvent(Message, bubble=False):
    """An event of the reply `worker` is generating: more text (token texts batched into one TokenEvent),
    live figures, the end, or the error that ended it; `worker` may be dead by the time it arrives."""

    event: Event
    worker: ModelWorker


@dataclass
class MemorySampled(Message, bubble=False):
    """The model process's memory between replies: VRAM (`vram_scope` "proc": its own, "gpu": the whole
    GPU's, when the driver names no processes) and RSS; None where it could not be read."""

    vram_bytes: int | None
    vram_scope: str
    rss_bytes: int | None


@dataclass
class DownloadProgressed(Message, bubble=False):
    """How far the download of the hub model `ref` has come (the hub's own progress event)."""

    ref: str
    progress: DownloadProgress


@dataclass
class DownloadEnded(Message, bubble=False):
    """The download of `ref` ended: `path` is the file it fetched, or `error` says why not; neither: it was
    cancelled (the part fetched is kept for a later resume)."""

    ref: str
    path: Path | None = None
    error: BaseException | None = None
