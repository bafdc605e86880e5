"""Routed-expert placement <-> llama.cpp tensor overrides (`-ot regex=BUFT`) and `--n-cpu-moe N`.

A placement of experts on the CPU is a map layer -> parts ({"up", "gate", "down"}, or all of them).
It is written as few, exact regexes: whole layers grouped into one alternation, split layers one pattern
each. llama.cpp matches with regex_search, so `blk\\.1\\.` never matches `blk.10.`.
"""

from __future__ import annotations

# The parser (layers_from_overrides) lives beside TensorOverride in moetui.config, since RunConfig uses
# it too; re-exported here beside the writers.
from typing import TYPE_CHECKING

from moetui.config import ALL_PARTS, TensorOverride, layers_from_overrides, part_in  # noqa: F401

if TYPE_CHECKING:  # (the module stays light: the CLI's export imports it without a model)
    from moetui.model.info import ModelInfo

# The same expert regex llama.cpp's --cpu-moe / --n-cpu-moe use (common.h LLM_FFN_EXPS_REGEX).
LLAMA_EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


def cpu_expert_overrides(cpu: dict[int, set[str] | frozenset[str]], device: str = "CPU") -> list[TensorOverride]:
    whole = sorted(il for il, parts in cpu.items() if set(parts) >= ALL_PARTS)
    out: list[TensorOverride] = []
    if whole:
        alt = whole[0] if len(whole) == 1 else "(" + "|".join(str(i) for i in whole) + ")"
        out.append(TensorOverride(rf"blk\.{alt}\.ffn_(up|down|gate|gate_up)_exps", device))
    for il in sorted(cpu):
        parts = set(cpu[il])
        if parts >= ALL_PARTS or not parts:
            continue
        for part in sorted(parts):
            out.append(TensorOverride(rf"blk\.{il}\.ffn_{part}_exps", device))
    return out


def n_cpu_moe_equivalent(cpu: dict[int, set[str]]) -> int | None:
    """N when the CPU experts are exactly the whole experts of layers 0..N-1 (what --n-cpu-moe N does)."""
    if not cpu:
        return 0
    layers = sorted(cpu)
    if layers != list(range(len(layers))):
        return None
    if any(set(p) < ALL_PARTS for p in cpu.values()):
        return None
    return len(layers)


def n_cpu_moe_overrides(n: int) -> list[TensorOverride]:
    """Exactly the overrides llama.cpp's --n-cpu-moe N adds."""
    return [TensorOverride(rf"blk\.{i}{LLAMA_EXPS_REGEX}", "CPU") for i in range(n)]


def experts_in_ram_bytes(model: ModelInfo, overrides: list[TensorOverride]) -> int | None:
    """Bytes of routed-expert weights that overrides keep in RAM (None: an override moetui cannot read)."""
    cpu = layers_from_overrides(overrides)
    if cpu is None:
        return None
    total = 0
    for il, parts in cpu.items():
        if 0 <= il < model.n_layers:
            for part, nbytes in model.layers[il].expert_bytes.items():
                if part_in(part, parts):
                    total += nbytes
    return total
