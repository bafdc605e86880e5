"""The messages Chat's generation worker posts to its screen (Textual's post_message is thread-safe): one
small dataclass per kind of worker event, handled by ChatScreen.on_reply_*."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from moetui.errors import MoetuiError


@dataclass
class ReplyText(Message, bubble=False):
    """More text of the reply being generated (a batch of tokens)."""

    text: str


@dataclass
class ReplyStats(Message, bubble=False):
    """Live figures from the model worker (moetui.runtime.stats.LiveStats)."""

    stats: Any


@dataclass
class ReplyDone(Message, bubble=False):
    """The reply is complete (moetui.runtime.client.DoneEvent: the whole text, finish reason, stats)."""

    done: Any


@dataclass
class ReplyFailed(Message, bubble=False):
    """Generation failed; `worker` is the ModelWorker it ran on (it may be dead)."""

    error: MoetuiError
    worker: Any
