"""One measured candidate configuration, with the roles and statuses a probe can have."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from moetui.config import RunConfig
from moetui.runtime.bench import BenchResult


class ProbeRole(StrEnum):
    """Why a probe was measured."""

    PLAN = "plan"  # the sizing core's untuned plan, the search's start
    BASELINE = "baseline"  # llama.cpp's defaults, measured the same way
    SEARCH = "search"  # a candidate, compared side by side with the config it would replace
    FINAL = "final"  # the winner and the start, measured side by side once more before the tune answers


class ProbeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # not measured: it failed before on this rig, or the tune was cancelled


# roles profiles saved by earlier versions used
_LEGACY_ROLES = {"reference": ProbeRole.SEARCH, "recheck": ProbeRole.SEARCH, "confirm": ProbeRole.FINAL}

# kept for callers that list them
STATUSES = tuple(s.value for s in ProbeStatus)


@dataclass
class Probe:
    index: int
    config: RunConfig
    changes: dict[str, Any]  # what differs from the starting plan, e.g. {"n_cpu_moe": 12, "n_ubatch": 2048}
    label: str  # short human text, e.g. "experts in RAM 12, ub 2048, t 8"
    status: ProbeStatus = ProbeStatus.PENDING
    bench: BenchResult | None = None
    # the objective as a rate, higher is better (tok/s; for the "turn" objective the workload's tokens over
    # its seconds per turn, which ranks exactly as seconds per turn do)
    score: float | None = None
    turn_s: float | None = None  # seconds per turn of the tune's workload at this probe's median speeds
    predicted_decode_tps: float | None = None
    predicted_prompt_tps: float | None = None
    vram_bytes: int | None = None  # measured (NVML per process) where available
    load_s: float | None = None
    reloaded: bool = True  # False when only context-level settings changed
    error: str | None = None
    error_kind: str | None = None  # "oom" | "crash" | "hang" | "headroom" | ...
    seconds: float | None = None  # wall time this probe took (loads + measurements)
    role: ProbeRole = ProbeRole.SEARCH

    def __post_init__(self) -> None:
        self.status, self.role = ProbeStatus(self.status), ProbeRole(self.role)

    @property
    def ok(self) -> bool:
        return self.status == ProbeStatus.OK and self.bench is not None

    @property
    def tg(self) -> float | None:
        return self.bench.tg_median if self.bench else None

    @property
    def pp(self) -> float | None:
        return self.bench.pp_median if self.bench else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "config": self.config.to_dict(), "changes": dict(self.changes), "label": self.label,
            "status": str(self.status), "bench": self.bench.to_dict() if self.bench else None, "score": self.score,
            "turn_s": self.turn_s, "predicted_decode_tps": self.predicted_decode_tps,
            "predicted_prompt_tps": self.predicted_prompt_tps, "vram_bytes": self.vram_bytes, "load_s": self.load_s,
            "reloaded": self.reloaded, "error": self.error, "error_kind": self.error_kind, "seconds": self.seconds,
            "role": str(self.role),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Probe:
        d = dict(d)
        cfg = RunConfig.from_dict(d.pop("config"))
        bench = d.pop("bench", None)
        d["role"] = _LEGACY_ROLES.get(d.get("role"), d.get("role", ProbeRole.SEARCH))
        names = set(cls.__dataclass_fields__) - {"config", "bench"}
        return cls(config=cfg, bench=BenchResult.from_dict(bench) if bench else None,
                   **{k: v for k, v in d.items() if k in names})


def short_label(changes: dict[str, Any]) -> str:
    """Human text for a probe's changes from the plan."""
    if not changes:
        return "plan"
    names = {"n_cpu_moe": "experts in RAM", "experts_in_ram_last": "experts in RAM, last", "boundary": "split", "n_threads": "t", "n_threads_batch": "tb",
             "n_ubatch": "ub", "n_batch": "b", "flash_attn": "fa", "cache_type": "kv", "load_mode": "load",
             "repack": "repack", "draft_max": "draft-max", "draft": "draft", "n_gpu_layers": "ngl",
             "overrides": "overrides"}
    return ", ".join(f"{names.get(k, k)} {v}" for k, v in changes.items())
