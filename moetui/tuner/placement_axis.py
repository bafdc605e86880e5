"""Expert placement as one axis: position p = number of expert *parts* kept in RAM, counted from one end of
the model, whole layers with the boundary layer split part by part: from the first MoE layer (what
llama.cpp's --n-cpu-moe does) or from the last (what llama.cpp's fit and moetui's plan do).
p = k * P + j: k MoE layers' experts in RAM plus j parts of the next one, P parts per layer.
The tuner walks this axis from the plan's position in both directions, at the plan's end of the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from moetui.config import RunConfig
from moetui.model.info import ModelInfo
from moetui.sizing.overrides import (
    ALL_PARTS,
    cpu_expert_overrides,
    layers_from_overrides,
)
from moetui.sizing.placement import PART_ORDER


# probe changes that name a position on the axis (one of the first two, maybe the third)
AXIS_KEYS = ("n_cpu_moe", "experts_in_ram_last", "boundary")


@dataclass
class PlacementAxis:
    moe_layers: list[int]  # indices of the MoE layers, in the order they go to RAM
    parts: list[str]  # expert parts of a layer, in the order they move to the GPU
    from_end: bool = False  # moe_layers run from the last layer down

    @classmethod
    def for_model(cls, model: ModelInfo, config: RunConfig | None = None) -> PlacementAxis | None:
        """The axis at the end of the model where `config` keeps its experts in RAM: the first layers when
        its RAM experts include the first MoE layer but not the last, else the last (the plan's default)."""
        moe = [l.index for l in model.layers if l.is_moe and l.expert_bytes]
        if not moe:
            return None
        parts = [p for p in PART_ORDER if p in model.layers[moe[0]].expert_bytes]
        cpu = layers_from_overrides(config.overrides) if config is not None else None
        first = bool(cpu) and moe[0] in cpu and moe[-1] not in cpu
        return cls(moe, parts) if first else cls(moe[::-1], parts, from_end=True)

    @property
    def per_layer(self) -> int:
        return len(self.parts)

    @property
    def max(self) -> int:
        return len(self.moe_layers) * self.per_layer

    def position(self, config: RunConfig) -> int | None:
        """Where a config sits on the axis; None when its overrides are not expert placements."""
        cpu = layers_from_overrides(config.overrides)
        if cpu is None:
            return None
        pos = 0
        for il in self.moe_layers:
            parts = cpu.get(il, set())
            pos += self.per_layer if set(parts) >= ALL_PARTS else sum(1 for p in self.parts if p in parts)
        return pos

    def cpu_map(self, pos: int) -> dict[int, set[str]]:
        k, j = divmod(max(0, min(pos, self.max)), self.per_layer)
        out: dict[int, set[str]] = {il: set(ALL_PARTS) for il in self.moe_layers[:k]}
        if j and k < len(self.moe_layers):
            out[self.moe_layers[k]] = set(self.parts[self.per_layer - j:])  # the last parts to move stay in RAM
        return out

    def config_at(self, base: RunConfig, pos: int) -> RunConfig:
        return base.replace(overrides=cpu_expert_overrides(self.cpu_map(pos)))

    def describe(self, pos: int) -> dict[str, object]:
        """The probe's `changes` entry: {"n_cpu_moe": N} (from the first layer) or {"experts_in_ram_last":
        k} (from the last), plus {"boundary": "blk.N down in RAM"} when a layer is split."""
        k, j = divmod(pos, self.per_layer)
        out: dict[str, object]
        if self.from_end:
            out = {"experts_in_ram_last": k}
        else:  # in llama.cpp's terms: --n-cpu-moe counts layers from 0, dense leading layers included
            out = {"n_cpu_moe": self.moe_layers[k - 1] + 1 if k else 0}
        if j:
            il = self.moe_layers[k]
            out["boundary"] = f"blk.{il} " + "+".join(self.parts[self.per_layer - j:]) + " in RAM"
        return out


# what one probe at a position said, relative to the best so far
BETTER, SAME, WORSE, FAILED, STOP = "better", "same", "worse", "failed", "stop"


def walk(pos0: int, start_ok: bool, per_layer: int, max_pos: int, try_pos: Callable[[int], str],
         best_pos: Callable[[], int | None]) -> list[int]:
    """Search the placement axis from the plan's position `pos0`; returns the positions tried, in order.

    - The plan failed (usually OOM): whole layers more in RAM until one loads.
    - Else whole layers fewer in RAM (faster decode) while they load and are not worse; if the very first
      step down fails or is worse, whole layers more in RAM while that is better (it frees VRAM).
    - Then the boundary: from the best whole-layer position, move the next layer's parts to the GPU one
      at a time (tensor granularity) until one fails or is worse.
    try_pos(pos) -> BETTER | SAME | WORSE | FAILED | STOP; best_pos() -> the best config's position.
    """
    tried: list[int] = []

    def at(pos: int) -> str:
        if pos < 0 or pos > max_pos or pos in tried:
            return FAILED
        tried.append(pos)
        return try_pos(pos)

    P = per_layer
    r = FAILED
    if not start_ok:
        pos = (pos0 // P + 1) * P
        while pos <= max_pos:
            r = at(pos)
            if r == STOP or r != FAILED:
                break
            pos += P
        if r == STOP:
            return tried
    else:
        pos = (pos0 // P) * P if pos0 % P else pos0 - P
        first = True
        while pos >= 0:
            r = at(pos)
            if r == STOP:
                return tried
            if r not in (BETTER, SAME):
                break
            first = False
            pos -= P
        if first and pos0 > 0:
            # (from all experts on the GPU, more in RAM only slows decode: nothing to look for up there)
            pos = (pos0 // P + 1) * P
            while pos <= max_pos:
                r = at(pos)
                if r == STOP:
                    return tried
                if r != BETTER:
                    break
                pos += P
    b = best_pos()
    if b is None or b % P or b == 0:
        return tried
    for j in range(1, P):
        r = at(b - j)
        if r != BETTER and r != SAME:
            break
    return tried
