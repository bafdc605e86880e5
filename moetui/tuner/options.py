"""What a tune may try and for how long."""

from __future__ import annotations

import math
from dataclasses import dataclass

from moetui.errors import ConfigError

DIMENSIONS = ("placement", "threads", "ubatch", "flash_attn", "cache_type", "load_mode", "draft")
OBJECTIVES = ("decode", "balanced", "prefill")
MIN_REPS = 3  # a median needs at least three figures: with two, one stalled repetition decides it


@dataclass
class TuneOptions:
    budget_s: float = 300.0  # wall-clock budget for probing
    objective: str = "decode"  # "decode" | "balanced" | "prefill"
    n_ctx: int | None = None  # the user's minimum context (None: the plan's default)
    vram_margin_bytes: int | None = None  # VRAM headroom (None: sizing default)
    n_prompt: int = 512  # fixed prompt length for pp measurement
    n_gen: int = 128  # decode tokens per measurement
    reps: int = 3  # >= 3; more while the spread is large
    dimensions: tuple[str, ...] | None = None  # subset of DIMENSIONS; None = all that apply
    draft_path: str | None = None  # a draft GGUF to try (on/off and draft-max)
    retune: bool = False  # ignore a saved profile
    max_probes: int | None = None

    def validate(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if not math.isfinite(self.budget_s) or self.budget_s <= 0:  # a NaN budget is never used up
            raise ConfigError(f"the tuning budget must be positive, not {self.budget_s}")
        if self.n_ctx is not None and self.n_ctx <= 0:
            raise ConfigError(f"context must be positive, not {self.n_ctx}")
        if self.vram_margin_bytes is not None and self.vram_margin_bytes < 0:
            raise ConfigError("the VRAM margin must be >= 0")
        if self.n_prompt < 1 or self.n_gen < 1:
            raise ConfigError("n_prompt and n_gen must be >= 1 (the tuner measures both)")
        if self.reps < MIN_REPS:
            raise ConfigError(f"reps must be >= {MIN_REPS} (each probe is the median of its repetitions)")
        if self.max_probes is not None and self.max_probes < 1:
            raise ConfigError("max_probes must be >= 1")
        bad = [d for d in (self.dimensions or ()) if d not in DIMENSIONS]
        if bad:
            raise ConfigError(f"unknown tuning dimension(s) {', '.join(bad)}; known: {', '.join(DIMENSIONS)}")
