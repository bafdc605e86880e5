"""Which catalog model and quant suit this rig best: for every target model in the catalog, the largest
quant that fits RAM + VRAM and reaches the minimum decode speed (moetui.sizing.quant_choice); among
those, the largest file wins (more parameters or more bits: the best model this rig runs at a usable
speed), ties going to the faster prediction. Used by the Best config screen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from moetui.errors import DoesNotFit
from moetui.hardware.rig import Rig
from moetui.hub.catalog import CatalogModel, QuantFile, load_catalog
from moetui.model.info import ModelInfo
from moetui.model.virtual import model_info_for_shape, shape_mix
from moetui.sizing.plan import Plan, PlanOptions
from moetui.sizing.quant_choice import (
    DEFAULT_MIN_DECODE_TPS,
    QuantVerdict,
    choose_quant,
)


@dataclass
class CatalogPick:
    model: CatalogModel
    quant: QuantFile
    plan: Plan
    considered: list[tuple[str, list[QuantVerdict]]] = field(default_factory=list)  # (model id, verdicts)

    @property
    def ref(self) -> str:
        return self.quant.ref


@dataclass
class Candidate:
    """One catalog model's closest miss: its fastest quant that fits memory (too slow for the minimum),
    else its smallest quant (too big)."""

    model: CatalogModel
    quant: QuantFile
    decode_tps: float | None  # predicted; None when not even the smallest quant fits
    why_not: str

    @property
    def ref(self) -> str:
        return self.quant.ref


class NothingFits(DoesNotFit):
    """No catalog model reaches the minimum speed on this rig; `candidates` says how close each came,
    fastest first."""

    def __init__(self, message: str, candidates: list[Candidate], min_decode_tps: float) -> None:
        super().__init__(message)
        self.candidates = candidates
        self.min_decode_tps = min_decode_tps

    @property
    def fastest(self) -> Candidate | None:
        """The fastest model that fits in memory at all: what "take the best anyway" takes."""
        return next((c for c in self.candidates if c.decode_tps is not None), None)

    def lowered_minimum(self) -> float | None:
        """A minimum the fastest candidate reaches (rounded down to 0.1 tok/s), or None."""
        best = self.fastest
        if best is None or best.decode_tps is None or best.decode_tps <= 0:
            return None
        return max(0.1, int(best.decode_tps * 10) / 10)


def _short_reason(v: QuantVerdict, min_decode_tps: float) -> str:
    if v.decode_tps is not None and v.reason.startswith("predicted"):
        return f"below {min_decode_tps:g} tok/s"
    reason = v.reason.removeprefix("does not fit: ")
    for cut in ("; ", " ("):
        reason = reason.split(cut)[0]
    return ("too big: " + reason) if v.reason.startswith("does not fit") else reason


def _candidate(model: CatalogModel, quants: list[QuantFile], verdicts: list[QuantVerdict],
               min_decode_tps: float) -> Candidate | None:
    if not verdicts:
        return None
    fitting = [v for v in verdicts if v.decode_tps is not None]
    v = max(fitting, key=lambda v: v.decode_tps or 0.0) if fitting else verdicts[-1]  # verdicts: largest first
    q = next(q for q in quants if q.quant == v.quant)
    return Candidate(model, q, v.decode_tps, _short_reason(v, min_decode_tps)[:60])


def _quants(model: CatalogModel) -> list[QuantFile]:
    """One QuantFile per quant label, the model's first repo preferred (its main publisher)."""
    primary = model.repos[0] if model.repos else ""
    out: dict[str, QuantFile] = {}
    for q in sorted(model.quants, key=lambda q: q.repo != primary):
        out.setdefault(q.quant.upper(), q)
    return list(out.values())


def pick_from_catalog(rig: Rig, catalog: list[CatalogModel] | None = None, options: PlanOptions | None = None,
                      min_decode_tps: float = DEFAULT_MIN_DECODE_TPS,
                      progress: Callable[[int, int, str], None] | None = None) -> CatalogPick:
    """The catalog's best fit for `rig`. Raises DoesNotFit (with each model's reason) when none fits."""
    models = [m for m in (catalog if catalog is not None else load_catalog()) if m.role == "target" and m.shape and m.quants]
    infos: dict[str, ModelInfo] = {}
    best: CatalogPick | None = None
    considered: list[tuple[str, list[QuantVerdict]]] = []
    candidates: list[Candidate] = []
    for i, m in enumerate(models):
        if progress is not None:
            progress(i, len(models), m.name)
        assert m.shape is not None
        if m.shape not in infos:
            infos[m.shape] = model_info_for_shape(m.shape, shape_mix(m.shape))
        quants = _quants(m)
        choice = choose_quant([(q.quant, q.size_bytes) for q in quants], infos[m.shape], rig, options, min_decode_tps)
        considered.append((m.id, choice.verdicts))
        if choice.chosen is None or choice.plan is None:
            cand = _candidate(m, quants, choice.verdicts, min_decode_tps)
            if cand is not None:
                candidates.append(cand)
            continue
        q = next(q for q in quants if q.quant == choice.chosen)
        key = (q.size_bytes, choice.plan.decode_tps)
        if best is None or key > (best.quant.size_bytes, best.plan.decode_tps):
            best = CatalogPick(m, q, choice.plan)
    if best is None:
        reasons = "; ".join(f"{mid}: {v[-1].reason}" for mid, v in considered if v)  # its smallest quant
        candidates.sort(key=lambda c: -(c.decode_tps if c.decode_tps is not None else -1.0))
        raise NothingFits(f"no catalog model fits this rig at {min_decode_tps:g} tok/s or more ({reasons})",
                          candidates, min_decode_tps)
    best.considered = considered
    return best
