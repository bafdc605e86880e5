"""Decode-speed prediction across rigs: threads, RAM bandwidth, saved factors, the fitted reference set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from moetui.sizing.placement import Assignment, hops_per_token, tensor_placement
from moetui.sizing.speed import NO_THREAD_LIMIT_GBS, EfficiencyFactors, cpu_decode_bandwidth_gbs, predict
from moetui.model.virtual import model_info_for_shape

TUNING = Path(__file__).resolve().parent.parent / "tuning"


@pytest.fixture(scope="module")
def qwen30b():
    return model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")


def decode(model, n_cpu_moe: int, *, ram_gbs: float = 100.0, cores: int = 16, threads: int | None = None,
           eff: EfficiencyFactors | None = None, theoretical: bool = False) -> float:
    n = model.n_layers
    a = Assignment(["CUDA0"], ["CUDA0"] * n, {il: {"up", "gate", "down"} for il in range(n_cpu_moe)}, "CUDA0", -1)
    sp = predict(model, tensor_placement(model, a), {"CUDA0": n}, {"CUDA0": 1000.0, "CPU": ram_gbs}, cores,
                 hops_per_token(model, a), 31.5, 512, eff or EfficiencyFactors(), n_threads=threads,
                 ram_bw_theoretical=theoretical)
    return sp.decode_tps


def test_more_threads_never_predicts_slower(qwen30b):
    speeds = [decode(qwen30b, 30, threads=t) for t in range(1, 25)]
    assert all(b >= a for a, b in zip(speeds, speeds[1:])), speeds
    # below the core count the threads are the limit: each one more is strictly faster
    assert all(b > a for a, b in zip(speeds[:15], speeds[1:16]))


def test_threads_past_the_physical_cores_add_nothing(qwen30b):
    assert decode(qwen30b, 30, threads=32, cores=16) == pytest.approx(decode(qwen30b, 30, threads=16, cores=16))
    assert decode(qwen30b, 30, threads=None, cores=16) == pytest.approx(decode(qwen30b, 30, threads=16, cores=16))


def test_higher_probe_bandwidth_predicts_faster_decode_with_experts_in_ram(qwen30b):
    speeds = [decode(qwen30b, 30, ram_gbs=bw) for bw in (25.0, 50.0, 100.0, 200.0, 400.0)]
    assert all(b > a for a, b in zip(speeds, speeds[1:])), speeds
    # with no experts in RAM (only the embedding row lookup) the RAM bandwidth hardly matters
    assert decode(qwen30b, 0, ram_gbs=25.0) == pytest.approx(decode(qwen30b, 0, ram_gbs=400.0), rel=1e-3)


def test_spec_bandwidth_is_scaled_by_what_a_probe_reaches():
    eff = EfficiencyFactors(probe_of_theoretical=0.5, cpu_thread_gbs=NO_THREAD_LIMIT_GBS)
    assert cpu_decode_bandwidth_gbs(100.0, eff, 16, ram_bw_theoretical=True) == pytest.approx(
        cpu_decode_bandwidth_gbs(50.0, eff, 16))


def test_profile_saved_before_the_thread_term_predicts_as_before(qwen30b):
    old = {"gpu_bw": 0.45, "cpu_bw": 0.52, "hop_latency_s": 30e-6, "token_overhead_s": 1.3e-3,
           "layer_overhead_s": 8e-6, "source": "tuned on rig-x", "retired_field": 1}
    eff = EfficiencyFactors.from_dict(old)
    assert eff.cpu_thread_gbs == NO_THREAD_LIMIT_GBS and eff.cpu_bw == 0.52
    assert decode(qwen30b, 30, threads=2, eff=eff) == pytest.approx(decode(qwen30b, 30, threads=16, eff=eff), rel=1e-6)
    # the old formula: CPU time = active CPU bytes / (RAM x cpu_bw)
    assert cpu_decode_bandwidth_gbs(100.0, eff, 16) == pytest.approx(52.0, rel=1e-6)


def test_new_profile_round_trips():
    eff = EfficiencyFactors(cpu_bw=0.7, cpu_thread_gbs=9.0, probe_of_theoretical=0.8, source="rig-y")
    assert EfficiencyFactors.from_dict(json.loads(json.dumps(eff.to_dict()))) == eff


def test_fitted_defaults_predict_the_reference_set_within_the_reported_error():
    sys.path.insert(0, str(TUNING))
    import fit_speed_factors as fsf

    report = json.loads((TUNING / "results/speed_factors.json").read_text())
    eff = EfficiencyFactors()
    fitted = [e for e in fsf.load_entries() if e.get("in_fit", True)]
    assert len(fitted) >= 15
    errors = sorted(abs(fsf.predict_entry(e, eff) / float(e["decode_tps"]) - 1) for e in fitted)
    assert errors[-1] <= report["worst_abs_error"]["error_after"] + 0.01, errors
    assert errors[len(errors) // 2] <= report["median_abs_error"]["error_after"] + 0.01, errors
    # and the defaults are what the committed fit found
    assert {k: float(f"{getattr(eff, k):.3g}") for k in report["fitted"]} == report["fitted"]
