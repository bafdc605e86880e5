"""What a tune teaches the sizing core: efficiency factors scaled so the plan's prediction matches what its
config measured, so the next plan on this rig predicts better (PlanOptions.efficiency)."""

from __future__ import annotations

from typing import Any

from moetui.tuner.probe import Probe


def refit_efficiency(plan: Any, plan_probe: Probe, gpu_offload: bool, source: str) -> dict[str, Any]:
    """EfficiencyFactors (to_dict) refit from the plan's measured probe."""
    eff = plan.efficiency
    d = eff.to_dict()
    tg_ratio = (plan_probe.tg or 0.0) / plan.decode_tps if plan.decode_tps else None
    pp_ratio = (plan_probe.pp or 0.0) / plan.prompt_tps if plan.prompt_tps else None
    cpu = plan.mode == "cpu_only" or not gpu_offload
    if tg_ratio:
        if cpu:
            d["cpu_bw"] = eff.cpu_bw * tg_ratio
        elif plan.mode == "all_gpu":
            d["gpu_bw"] = eff.gpu_bw * tg_ratio
        else:
            d["cpu_bw"], d["gpu_bw"] = eff.cpu_bw * tg_ratio, eff.gpu_bw * tg_ratio
    if pp_ratio:
        if cpu:
            d["cpu_gflops_per_core"] = eff.cpu_gflops_per_core * pp_ratio
        else:
            d["gpu_flops_per_bw_byte"] = eff.gpu_flops_per_bw_byte * pp_ratio
    d["source"] = source
    d["measured_over_predicted"] = {"decode": tg_ratio, "prompt": pp_ratio}
    return d
