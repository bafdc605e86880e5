"""GPU smoke test of the auto-tuner: a ~2 GB MoE proxy on a GPU whose usable VRAM is cut down with the VRAM
margin (so the plan must keep some experts in RAM), then Tuner.run() with placement, ubatch and threads.
Shows the placement walk around the plan's --n-cpu-moe, headroom/OOM probes recorded and skipped.

Run on a GPU machine from the repository root:  source tuning/gpu/setup.sh && python3 tuning/gpu/tuner_smoke.py [BUDGET_GB]
Writes $OUT/tuner_smoke.json when $OUT is set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from moetui.hardware import detect_rig
from moetui.model.proxy import write_proxy
from moetui.model.shapes import load_shape, scaled
from moetui.tuner import ProbeFinished, TuneOptions, TuneProgress
from moetui.tuner.engine import Tuner
from moetui.sizing.settings import Settings


def main() -> int:
    budget_gb = float(sys.argv[1]) if len(sys.argv) > 1 else 1.6
    path = Path("/tmp/tuner-smoke-proxy.gguf")
    if not path.exists():
        shape = dataclasses.replace(scaled(load_shape("qwen3-30b-a3b"), "small"), n_expert=128, n_expert_used=4)
        write_proxy(shape, path, "Q4_K_M")
    rig = detect_rig(measure_bandwidth=False)
    g = rig.gpus[0]
    free = g.vram_free_bytes or g.vram_total_bytes
    margin = max(0, free - int(budget_gb * 1e9))  # leaves `budget_gb` of VRAM for the model
    print(f"{g.name}: {free / 1e9:.1f} GB free; margin {margin / 1e9:.1f} GB -> {budget_gb} GB usable; "
          f"build {rig.build.version} offload={rig.build.gpu_offload}", flush=True)
    t0 = time.time()

    def on_event(ev):
        if isinstance(ev, ProbeFinished):
            p = ev.probe
            figs = f"pp {p.pp:.0f} tg {p.tg:.1f}" if p.ok else f"{p.error_kind}: {p.error}"
            vram = f", VRAM {p.vram_bytes / 1e9:.2f} GB" if p.vram_bytes else ""
            print(f"[{time.time() - t0:5.0f}s] #{p.index} {p.label}: {p.status} {figs}{vram}", flush=True)
        elif isinstance(ev, TuneProgress):
            print(f"[{time.time() - t0:5.0f}s] {ev.message}", flush=True)

    opts = TuneOptions(Settings(n_ctx=4096, vram_margin_bytes=margin), budget_s=float(os.environ.get("TUNE_BUDGET", "240")),
                       n_gen=64, reps=3, dimensions=("placement", "ubatch", "threads"))
    tuner = Tuner(str(path), rig, opts)
    r = tuner.run(on_event)
    print(f"plan n_cpu_moe {tuner.plan.n_cpu_moe}, mode {tuner.plan.mode}; best: {r.best.label} "
          f"pp {r.best.pp:.0f} tg {r.best.tg:.1f}; {len(r.probes)} probes, {r.elapsed_s:.0f} s, {r.stopped}")
    out = os.environ.get("OUT")
    if out:
        Path(out, "tuner_smoke.json").write_text(json.dumps(r.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
