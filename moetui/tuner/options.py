"""What a tune may try, what it optimises and for how long."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moetui.errors import ConfigError
from moetui.sizing.settings import Settings
from moetui.sizing.workload import Workload

DIMENSIONS = ("placement", "threads", "ubatch", "flash_attn", "cache_type", "load_mode", "repack", "draft")
# each dimension as the Tune screen names it ("searching: threads, micro-batch, ...")
DIMENSION_WORDS = {"placement": "where the experts go", "threads": "threads", "ubatch": "micro-batch",
                   "flash_attn": "flash attention", "cache_type": "KV cache type", "load_mode": "load mode",
                   "repack": "weight repacking", "draft": "draft model"}
OBJECTIVES = ("turn", "decode", "balanced", "prefill")
MIN_REPS = 3  # a median needs at least three figures: with two, one stalled repetition decides it
MAX_ROUNDS_LIMIT = 32
PROMPT_CAP = 4096  # the largest ubatch searched: a longer prompt shows no setting the tuner can change
MIN_PROMPT = 512  # the least prompt measured (also for a workload without one: its figure is shown)
PROMPT_BUDGET_SHARE = 1 / 100  # one prompt repetition may take this share of the budget at the predicted speed


@dataclass
class TuneOptions:
    """How to measure (budget, objective, repetitions, ...); what the user asked for (context, margin,
    workload, KV type, draft, ...) is `settings`, the same object the plan, the export and the run get."""

    settings: Settings = field(default_factory=Settings)
    budget_s: float = 300.0  # wall-clock budget for probing
    objective: str = "turn"  # "turn" (seconds per turn of the settings' workload) | "decode" | "balanced" | "prefill"
    n_prompt: int | None = None  # prompt length per pp measurement (None: the workload's, capped; see engine)
    n_gen: int = 128  # decode tokens per measurement
    reps: int = 3  # >= 3: repetitions of a probe measured on its own
    max_rounds: int = 8  # interleaved rounds a comparison may grow to while the figures overlap
    dimensions: tuple[str, ...] | None = None  # subset of DIMENSIONS; None = all that apply
    retune: bool = False  # ignore a saved profile
    max_probes: int | None = None

    # the settings' fields the tuner reads, read-only: they are changed in the Settings, nowhere else
    @property
    def workload(self) -> Workload:
        return self.settings.workload

    @property
    def n_ctx(self) -> int | None:
        return self.settings.n_ctx

    @property
    def draft_path(self) -> str | None:
        """A draft GGUF to try (on/off and draft-max)."""
        return self.settings.draft_path

    def validate(self) -> None:
        if not isinstance(self.settings, Settings):
            raise ConfigError(f"the tune's settings must be a Settings, not {self.settings!r}", field="settings")
        self.settings.validate()
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if not math.isfinite(self.budget_s) or self.budget_s <= 0:  # a NaN budget is never used up
            raise ConfigError(f"the tuning budget must be positive, not {self.budget_s}", field="budget_s")
        if (self.n_prompt is not None and self.n_prompt < 1) or self.n_gen < 1:
            raise ConfigError("n_prompt and n_gen must be >= 1 (the tuner measures both)")
        if self.reps < MIN_REPS:
            raise ConfigError(f"reps must be >= {MIN_REPS} (each probe is the median of its repetitions)")
        if not MIN_REPS <= self.max_rounds <= MAX_ROUNDS_LIMIT:
            raise ConfigError(f"max_rounds must be between {MIN_REPS} and {MAX_ROUNDS_LIMIT}")
        if self.max_probes is not None and self.max_probes < 1:
            raise ConfigError("max_probes must be >= 1")
        bad = [d for d in (self.dimensions or ()) if d not in DIMENSIONS]
        if bad:
            raise ConfigError(f"unknown tuning dimension(s) {', '.join(bad)}; known: {', '.join(DIMENSIONS)}")


def measured_prompt(prompt_tokens: int, predicted_prompt_tps: float | None, budget_s: float) -> tuple[int, str | None]:
    """The prompt length to measure for a workload, and why it is shorter where it is."""
    want = prompt_tokens or MIN_PROMPT
    n = min(want, PROMPT_CAP)
    why = f"the largest ubatch searched is {PROMPT_CAP}" if n < want else None
    if predicted_prompt_tps and predicted_prompt_tps > 0:
        affordable = predicted_prompt_tps * budget_s * PROMPT_BUDGET_SHARE
        floor = min(want, MIN_PROMPT)
        if affordable < n:
            pow2 = 1 << max(0, int(affordable).bit_length() - 1)
            n2 = max(floor, min(n, pow2))
            if n2 < n:
                n, why = n2, f"at the predicted {predicted_prompt_tps:.0f} tok/s a longer one would eat the budget"
    if not prompt_tokens:
        return n, None
    note = f"prompt speed measured on {n} tokens of the workload's {prompt_tokens} ({why})" if n < prompt_tokens else None
    return n, note
