"""The tuner's pre-load headroom check (moetui.tuner.headroom) replayed on the committed H200 cells: for each
tune, the first placement candidate's VRAM predicted from the plan's measured VRAM and the experts it moves,
beside what NVML measured when that candidate was loaded. No GPU needed.

    python3 tuning/headroom_replay.py > tuning/results/headroom_replay.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from moetui.config import RunConfig  # noqa: E402
from moetui.model.virtual import model_info_for_shape  # noqa: E402
from moetui.sizing.overrides import experts_in_ram_bytes  # noqa: E402
from moetui.tuner.headroom import HEADROOM_SLACK  # noqa: E402
from moetui.tuner.placement_axis import PlacementAxis  # noqa: E402

GIB = 1 << 30
CELLS = sorted((HERE / "results").glob("speed_vs_fit*/cell*.json"))


def main() -> None:
    info = model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")
    print("# The pre-load headroom check replayed on the H200 cells\n")
    print("Rerun: `python3 tuning/headroom_replay.py > tuning/results/headroom_replay.md`. Per tune: the plan's VRAM as "
          "the tuner measured it (NVML), the first placement candidate's VRAM predicted from it (+ the bytes of the "
          "experts it moves to the GPU) and as NVML measured it when the tune loaded it; the check skips a candidate "
          f"predicted over the limit by more than {HEADROOM_SLACK >> 20} MiB.\n")
    print("| cell | candidate | plan measured GiB | candidate predicted GiB | candidate measured GiB | limit GiB | check |")
    print("|---|---|---|---|---|---|---|")
    for f in CELLS:
        c = json.loads(f.read_text())
        tune = c.get("tune") or {}
        probes = tune.get("probes") or []
        plan_vram = re.search(r"^plan: ok, VRAM ([\d.]+) GiB", probes[0]) if probes else None
        if not plan_vram:
            continue  # all on the GPU: no placement candidate
        cfg = RunConfig.from_dict(c["plans"]["chat"]["config"])
        axis = PlacementAxis.for_model(info, cfg)
        pos = axis.position(cfg)
        cand = (pos // axis.per_layer) * axis.per_layer if pos % axis.per_layer else pos - axis.per_layer
        moved = experts_in_ram_bytes(info, cfg.overrides) - experts_in_ram_bytes(info, axis.config_at(cfg, cand).overrides)
        predicted = float(plan_vram.group(1)) * GIB + moved
        measured = re.search(r"VRAM ([\d.]+) GiB", probes[1]) if len(probes) > 1 else None
        limit = c["cap_gib"] * GIB - c.get("margin_mib", 1024) * 2**20
        verdict = "skipped, not loaded" if predicted > limit + HEADROOM_SLACK else "loaded"
        name = ", ".join(f"{k} {v}" for k, v in axis.describe(cand).items())
        print(f"| {f.parent.name}/{f.stem} | {name} | {plan_vram.group(1)} | {predicted / GIB:.3f} | "
              f"{measured.group(1) if measured else '-'} | {limit / GIB:.2f} | {verdict} |")


if __name__ == "__main__":
    main()
