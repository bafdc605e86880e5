"""What the user waits for: one turn of their workload, the objective the planner and the tuner optimise.

A turn processes `prompt_tokens` new prompt tokens on top of `depth` tokens already in the KV cache, then
generates `reply_tokens`. Its time is what a person feels; prompt and decode tok/s are its two halves.
Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from moetui.errors import ConfigError


@dataclass(frozen=True)
class Workload:
    name: str
    prompt_tokens: int  # new prompt tokens per turn (the part that must be processed before the reply)
    depth: int  # tokens already in the KV cache when the turn starts (the conversation so far)
    reply_tokens: int  # generated tokens per turn

    def __post_init__(self) -> None:
        for field_name in ("prompt_tokens", "depth", "reply_tokens"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"workload {field_name} must be a whole number >= 0, not {value!r}")
        if self.prompt_tokens == 0 and self.reply_tokens == 0:
            raise ConfigError("a workload needs prompt tokens or reply tokens")

    @property
    def context_needed(self) -> int:
        """The context one turn fills: what was there, the new prompt and the reply."""
        return self.depth + self.prompt_tokens + self.reply_tokens

    def turn_seconds(self, prompt_tps: float | None, decode_tps: float | None) -> float:
        """Seconds for one turn at these speeds; inf when a needed speed is missing or zero."""
        seconds = 0.0
        for tokens, tps in ((self.prompt_tokens, prompt_tps), (self.reply_tokens, decode_tps)):
            if tokens == 0:
                continue
            if not tps or tps <= 0 or not math.isfinite(tps):
                return math.inf
            seconds += tokens / tps
        return seconds

    def describe(self) -> str:
        parts = []
        if self.prompt_tokens:
            parts.append(f"{self.prompt_tokens:,} new prompt tokens")
        if self.depth:
            parts.append(f"at {self.depth:,} tokens of context")
        if self.reply_tokens:
            parts.append(f"a {self.reply_tokens:,}-token reply")
        return f"{self.name}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Workload":
        try:
            return cls(str(d["name"]), int(d["prompt_tokens"]), int(d["depth"]), int(d["reply_tokens"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid workload: {exc}") from None


WORKLOADS: dict[str, Workload] = {
    "chat": Workload("chat", prompt_tokens=2048, depth=8192, reply_tokens=256),
    "long-prompt": Workload("long-prompt", prompt_tokens=16384, depth=0, reply_tokens=256),
    "decode": Workload("decode", prompt_tokens=0, depth=0, reply_tokens=256),
}
DEFAULT_WORKLOAD = "chat"

_EXPLICIT = re.compile(r"^\s*(\d+)\s*[,/:x]\s*(\d+)\s*[,/:x]\s*(\d+)\s*$")


def parse_workload(text: str | None) -> Workload:
    """A named workload (chat, long-prompt, decode) or explicit numbers "PROMPT,DEPTH,REPLY"."""
    if text is None or not str(text).strip():
        return WORKLOADS[DEFAULT_WORKLOAD]
    key = str(text).strip().lower()
    if key in WORKLOADS:
        return WORKLOADS[key]
    m = _EXPLICIT.match(key)
    if m:
        prompt, depth, reply = (int(g) for g in m.groups())
        return Workload(f"custom {prompt}/{depth}/{reply}", prompt, depth, reply)
    raise ConfigError(f"unknown workload {text!r}: use {', '.join(WORKLOADS)} or PROMPT,DEPTH,REPLY "
                      "(e.g. 2048,8192,256)")
