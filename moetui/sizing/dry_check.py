"""A plan's memory checked against llama.cpp's own accounting (its no_alloc dry run, moetui.runtime.dry_run).

Pure: figures in, figures out. The formulas in memory.py stay what the search and what-if rigs use; once
llama.cpp has dry-run the exact config, its figures per device replace the formula's (weights, KV +
recurrent state, compute; the runtime overhead is not a llama.cpp buffer and stays the formula's), and
the plan says by how much the formula was off. Where no dry run could be made, the plan says its figures
are the formula's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from moetui.sizing.memory import MemoryBreakdown


class DeviceFigures(Protocol):
    model: int
    context: int
    compute: int


@dataclass
class DryRunCheck:
    checked: bool
    # per device and buffer kind: (formula bytes, llama.cpp bytes)
    compared: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    note: str = ""

    def worst_error(self) -> float:
        """Largest relative gap of the formula against llama.cpp (positive: the formula said more)."""
        errs = [(f - d) / d for kinds in self.compared.values() for f, d in kinds.values() if d]
        return max(errs, key=abs, default=0.0)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def apply_dry_run(memory: dict[str, MemoryBreakdown], devices: Mapping[str, DeviceFigures],
                  budgets: Mapping[str, int] | None = None) -> DryRunCheck:
    """Replace the formula's per-device figures by llama.cpp's (in place) and say how far they were, and
    where llama.cpp's figures no longer fit a device's budget."""
    check = DryRunCheck(True)
    for dev, got in devices.items():
        mine = memory.setdefault(dev, MemoryBreakdown(dev))
        check.compared[dev] = {"weights": (mine.weights, got.model), "kv": (mine.kv, got.context),
                               "compute": (mine.compute, got.compute)}
        mine.weights, mine.kv, mine.compute = got.model, got.context, got.compute
    gaps = []
    for dev, kinds in check.compared.items():
        for kind, (formula, real) in kinds.items():
            if real and abs(formula - real) / real > 0.02:
                gaps.append(f"{dev} {kind} {_gib(real)} (formula {100 * (formula - real) / real:+.0f}%)")
    check.note = ("memory checked by llama.cpp's dry run (no_alloc) of this exact config"
                  + (": " + ", ".join(gaps) if gaps else ": the formula agrees within 2%"))
    over = [f"{d} by {_gib(m.total - budgets[d])}" for d, m in memory.items()
            if budgets and d in budgets and m.total > budgets[d]]
    if over:
        check.note += "; by llama.cpp's figures it exceeds the budget on " + ", ".join(over)
    return check


def formula_only(reason: str) -> DryRunCheck:
    return DryRunCheck(False, note=f"memory figures are moetui's formula's, not checked by llama.cpp ({reason})")
