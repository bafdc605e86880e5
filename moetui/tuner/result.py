"""The outcome of a tune: the winner, what it was compared with, every probe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moetui.errors import ConfigError
from moetui.sizing.workload import Workload
from moetui.tuner.evidence import Decision
from moetui.tuner.probe import Probe

RESULT_VERSION = 2


@dataclass
class TuneResult:
    best: Probe  # the winner (its .config is what to run)
    baseline: Probe | None  # llama.cpp-like defaults measured the same way
    plan_probe: Probe | None  # the sizing core's untuned plan, measured
    predicted: dict[str, float | None]  # {"decode_tps":..., "prompt_tps":...} from the plan
    probes: list[Probe]
    rig_fingerprint: str
    model_id: str
    llama_version: str
    objective: str
    elapsed_s: float
    stopped: str  # "budget" | "converged" | "cancelled" | "exhausted"
    from_cache: bool = False
    model_path: str = ""
    efficiency: dict[str, Any] | None = None  # EfficiencyFactors refit from the measurements (to_dict)
    created: float = 0.0  # unix time
    notes: list[str] = field(default_factory=list)
    # what the tune was asked to respect; a later tune may reuse this profile only where it still holds
    n_ctx_requested: int | None = None  # --ctx (None: the plan's default context)
    vram_margin_bytes: int | None = None  # the VRAM headroom it kept (the sizing default filled in); None: unknown
    workload: Workload | None = None  # what a turn is (None: a profile saved before workloads were remembered)
    n_prompt: int | None = None  # the prompt length each prompt measurement used
    decisions: list[Decision] = field(default_factory=list)  # every comparison, with its evidence

    @property
    def n_ctx(self) -> int:
        """The context the winner was tuned (and runs) at."""
        return self.best.config.n_ctx

    def reuse_problem(self, objective: str, min_ctx: int, vram_margin_bytes: int | None,
                      margin_matters: bool, workload: Workload | None = None) -> str | None:
        """Why this saved profile cannot answer a tune asked for (objective, workload, min_ctx, margin);
        None when it can. A profile tuned at a larger context or with more VRAM headroom also satisfies
        smaller asks: its config runs there too (a smaller context only frees memory)."""
        if self.stopped == "cancelled":
            return "the saved tune was cancelled"
        if self.objective != objective:
            return f"the saved profile was tuned for {self.objective}, not {objective}"
        if workload is not None and self.workload != workload:
            was = self.workload.describe() if self.workload else "no stated workload"
            return f"the saved profile was tuned for {was}, not {workload.describe()}"
        if self.n_ctx < min_ctx:
            return f"the saved profile was tuned at context {self.n_ctx}, below the {min_ctx} asked for"
        if margin_matters and vram_margin_bytes is not None:
            if self.vram_margin_bytes is None or self.vram_margin_bytes < vram_margin_bytes:
                kept = "an unknown" if self.vram_margin_bytes is None else f"{self.vram_margin_bytes / 1e9:.2f} GB"
                return (f"the saved profile kept {kept} of VRAM free, less than the "
                        f"{vram_margin_bytes / 1e9:.2f} GB asked for")
        return None

    def to_dict(self) -> dict[str, Any]:
        # probes are stored once; best/baseline/plan_probe refer to them by index
        return {
            "version": RESULT_VERSION, "best": self.best.index,
            "baseline": self.baseline.index if self.baseline else None,
            "plan_probe": self.plan_probe.index if self.plan_probe else None,
            "predicted": dict(self.predicted), "probes": [p.to_dict() for p in self.probes],
            "rig_fingerprint": self.rig_fingerprint, "model_id": self.model_id, "llama_version": self.llama_version,
            "objective": self.objective, "elapsed_s": self.elapsed_s, "stopped": self.stopped,
            "model_path": self.model_path, "efficiency": self.efficiency, "created": self.created, "notes": list(self.notes),
            "n_ctx_requested": self.n_ctx_requested, "vram_margin_bytes": self.vram_margin_bytes,
            "workload": self.workload.to_dict() if self.workload else None, "n_prompt": self.n_prompt,
            "decisions": [d.to_dict() for d in self.decisions],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TuneResult:
        try:
            probes = [Probe.from_dict(p) for p in d["probes"]]
            by_index = {p.index: p for p in probes}

            def ref(i: Any) -> Probe | None:
                return by_index[i] if i is not None else None

            best = ref(d["best"])
            if best is None:
                raise KeyError("best")
            return cls(
                best=best, baseline=ref(d.get("baseline")), plan_probe=ref(d.get("plan_probe")),
                predicted=dict(d.get("predicted") or {}), probes=probes, rig_fingerprint=str(d["rig_fingerprint"]),
                model_id=str(d["model_id"]), llama_version=str(d["llama_version"]), objective=str(d["objective"]),
                elapsed_s=float(d["elapsed_s"]), stopped=str(d["stopped"]), model_path=str(d.get("model_path") or ""),
                efficiency=d.get("efficiency"), created=float(d.get("created") or 0.0), notes=list(d.get("notes") or []),
                n_ctx_requested=_opt_int(d.get("n_ctx_requested")), vram_margin_bytes=_opt_int(d.get("vram_margin_bytes")),
                workload=Workload.from_dict(d["workload"]) if d.get("workload") else None,
                n_prompt=_opt_int(d.get("n_prompt")), decisions=[Decision.from_dict(x) for x in d.get("decisions") or []],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"not a moetui tuning profile ({type(exc).__name__}: {exc})") from None


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)
