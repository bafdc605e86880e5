"""Which quant of a model to pick: the highest-quality (largest) one that fits RAM + VRAM at the target
context and reaches a minimum decode speed, with the reason each larger one was rejected.

Only one ModelInfo is needed: the bytes of every tensor scale by the size ratio of the files (quants of
one model share every shape; what differs is bytes per weight, close to uniform across roles)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from moetui.errors import ConfigError, DoesNotFit, MoetuiError
from moetui.hardware.rig import Rig
from moetui.model.info import ModelInfo
from moetui.sizing.plan import Plan, PlanOptions, plan

DEFAULT_MIN_DECODE_TPS = 10.0


@dataclass
class QuantVerdict:
    quant: str
    size_bytes: int
    ok: bool
    reason: str
    decode_tps: float | None = None


@dataclass
class QuantChoice:
    chosen: str | None
    plan: Plan | None
    verdicts: list[QuantVerdict] = field(default_factory=list)  # largest first

    @property
    def rejected(self) -> list[QuantVerdict]:
        return [v for v in self.verdicts if not v.ok]


def scaled_model(model: ModelInfo, size_bytes: int) -> ModelInfo:
    """`model` with every tensor's bytes scaled so the total matches a quant of size_bytes."""
    ref = model.file_bytes or model.total_bytes
    r = size_bytes / ref
    m = copy.deepcopy(model)
    for t in m.tensors:
        t.nbytes = int(t.nbytes * r)
    for layer in m.layers:
        layer.expert_bytes = {k: int(v * r) for k, v in layer.expert_bytes.items()}
        layer.other_bytes = int(layer.other_bytes * r)
    m.bytes_by_role = {k: int(v * r) for k, v in m.bytes_by_role.items()}
    m.expert_bytes_by_part = {k: int(v * r) for k, v in m.expert_bytes_by_part.items()}
    m.total_bytes = sum(t.nbytes for t in m.tensors)
    m.file_bytes = size_bytes
    return m


def choose_quant(quants: list[tuple[str, int]], model: ModelInfo, rig: Rig, options: PlanOptions | None = None,
                 min_decode_tps: float = DEFAULT_MIN_DECODE_TPS) -> QuantChoice:
    if not quants:
        raise ConfigError("no quant files to choose from")
    if any(size <= 0 for _, size in quants):
        raise ConfigError("every quant needs a positive size in bytes")
    o = options or PlanOptions()
    out = QuantChoice(None, None)
    for name, size in sorted(quants, key=lambda q: -q[1]):
        m = scaled_model(model, size)
        m.file_type = name
        try:
            p = plan(m, rig, o)
        except DoesNotFit as exc:
            out.verdicts.append(QuantVerdict(name, size, False, f"does not fit: {exc}"))
            continue
        except MoetuiError as exc:
            out.verdicts.append(QuantVerdict(name, size, False, str(exc)))
            continue
        if o.n_ctx and p.config.n_ctx < o.n_ctx * o.n_parallel:
            out.verdicts.append(QuantVerdict(name, size, False, f"only {p.config.n_ctx} tokens of context fit "
                                             f"(asked {o.n_ctx})", p.decode_tps))
            continue
        if p.decode_tps < min_decode_tps:
            out.verdicts.append(QuantVerdict(name, size, False, f"predicted {p.decode_tps:.1f} tok/s decode, below "
                                             f"the {min_decode_tps:g} tok/s minimum", p.decode_tps))
            continue
        out.verdicts.append(QuantVerdict(name, size, True, f"fits ({p.mode}), predicted {p.decode_tps:.1f} tok/s",
                                         p.decode_tps))
        if out.chosen is None:
            out.chosen, out.plan = name, p
            break
    return out
