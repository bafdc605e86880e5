"""The outcome of a tune: the winner, what it was compared with, every probe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moetui.errors import ConfigError
from moetui.sizing.settings import Settings
from moetui.sizing.workload import Workload
from moetui.tuner.evidence import Decision
from moetui.tuner.probe import Probe

RESULT_VERSION = 3  # 3: the settings it was tuned for, whole (2 kept context, margin, workload)


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
    # what the tune was asked to respect (context, margin, budget, workload, KV type, ...): a later ask may
    # reuse this profile only where its settings do not contradict these
    # None: unknown (a profile of the first release, which kept neither): it answers no later ask
    settings: Settings | None = field(default_factory=Settings)
    n_prompt: int | None = None  # the prompt length each prompt measurement used
    decisions: list[Decision] = field(default_factory=list)  # every comparison, with its evidence

    @property
    def n_ctx(self) -> int:
        """The context the winner was tuned (and runs) at."""
        return self.best.config.n_ctx

    @property
    def workload(self) -> Workload | None:
        return self.settings.workload if self.settings is not None else None

    def reuse_problem(self, objective: str, settings: Settings, min_ctx: int, gpu_matters: bool) -> str | None:
        """Why this saved profile cannot answer a tune asked for (objective, settings whose context is
        min_ctx); None when it can. A profile tuned at a larger context or with more VRAM headroom also
        satisfies smaller asks: its config runs there too (a smaller context only frees memory)."""
        if self.stopped == "cancelled":
            return "the saved tune was cancelled"
        if self.objective != objective:
            return f"the saved profile was tuned for {self.objective}, not {objective}"
        return settings.reuse_problem(self.settings, self.n_ctx, min_ctx, gpu_matters=gpu_matters)

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
            "settings": self.settings.to_dict() if self.settings is not None else None,
            "workload": self.workload.to_dict() if self.workload else None,  # for readers of `tune --json`
            "n_prompt": self.n_prompt,
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
                settings=_settings(d),
                n_prompt=_opt_int(d.get("n_prompt")), decisions=[Decision.from_dict(x) for x in d.get("decisions") or []],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"not a moetui tuning profile ({type(exc).__name__}: {exc})") from None


def _settings(d: dict[str, Any]) -> Settings | None:
    """The settings a profile was tuned for: format 3 keeps them whole; format 2 kept the context, the
    margin and the workload (a value today's Settings refuse, a context below its least, leaves that
    setting at its default); the first release none (None: unknown)."""
    if "settings" in d:
        return Settings.from_dict(d["settings"]) if d["settings"] is not None else None
    if "vram_margin_bytes" not in d:
        return None
    kept: dict[str, Any] = {"n_ctx": _opt_int(d.get("n_ctx_requested")),
                            "vram_margin_bytes": _opt_int(d.get("vram_margin_bytes"))}
    if d.get("workload"):
        kept["workload"] = Workload.from_dict(d["workload"])
    try:
        return Settings(**kept)
    except ConfigError:
        return Settings(workload=kept.get("workload", Settings().workload))


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)
