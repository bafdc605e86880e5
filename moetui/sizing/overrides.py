"""Routed-expert placement <-> llama.cpp tensor overrides (`-ot regex=BUFT`) and `--n-cpu-moe N`.

A placement of experts on the CPU is a map layer -> parts ({"up", "gate", "down"}, or all of them).
It is written as few, exact regexes: whole layers grouped into one alternation, split layers one pattern
each. llama.cpp matches with regex_search, so `blk\\.1\\.` never matches `blk.10.`.
"""

from __future__ import annotations

import re

from moetui.config import TensorOverride

ALL_PARTS = frozenset({"up", "gate", "down"})
# The same expert regex llama.cpp's --cpu-moe / --n-cpu-moe use (common.h LLM_FFN_EXPS_REGEX).
LLAMA_EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"

_WHOLE = re.compile(r"^blk\\\.\(?([0-9|]+)\)?\\\.ffn_\(up\|down\|gate(?:\|gate_up)?\)_(?:\(ch\|\))?exps$")
_PART = re.compile(r"^blk\\\.([0-9]+)\\\.ffn_(up|down|gate|gate_up)_exps$")
_NCMOE = re.compile(r"^blk\\\.([0-9]+)\\\.ffn_\(up\|down\|gate\|gate_up\)_\(ch\|\)exps$")


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


def layers_from_overrides(overrides: list[TensorOverride]) -> dict[int, set[str]] | None:
    """Parse moetui's (and --n-cpu-moe's) expert overrides back to layer -> parts on the CPU.
    None if some override is not of that form (a hand-written regex)."""
    cpu: dict[int, set[str]] = {}
    for o in overrides:
        if o.device.upper() != "CPU":
            return None
        m = _WHOLE.match(o.pattern) or _NCMOE.match(o.pattern)
        if m:
            for il in m.group(1).split("|"):
                cpu.setdefault(int(il), set()).update(ALL_PARTS)
            continue
        m = _PART.match(o.pattern)
        if m:
            part = m.group(2)
            cpu.setdefault(int(m.group(1)), set()).update({"up", "gate"} if part == "gate_up" else {part})
            continue
        return None
    return cpu


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
