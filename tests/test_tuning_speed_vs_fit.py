"""The speed-vs-fit report's own arithmetic (tuning/speed_vs_fit.py): moetui's memory model applied to a
llama-bench line gives what the plan predicts for itself, and one line benched twice is reported once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tuning"))

import speed_vs_fit  # noqa: E402

from moetui.export.llama_tools import ensure_llama_tools  # noqa: E402
from moetui.sizing.plan import PlanOptions, plan  # noqa: E402
from test_sizing_plan import make_rig  # noqa: E402


@pytest.fixture(scope="module")
def proxy():
    return speed_vs_fit.proxy_info()


@pytest.fixture
def bench_bin(monkeypatch):
    """The lines are exported for the real llama-bench (its --help checks every flag), built from the vendored
    sources as the export tests build it."""
    monkeypatch.setattr(speed_vs_fit, "BIN", ensure_llama_tools(["llama-bench"]))


@pytest.mark.parametrize("experts_in_ram", ["last", "first"])  # -ot patterns; -ncmoe for whole first layers
@pytest.mark.parametrize("cap_gib, ctx", [(12, 8192), (8, 32768)])
def test_the_memory_of_an_exported_bench_line_is_the_plans_own(proxy, bench_bin, experts_in_ram, cap_gib, ctx):
    p = plan(proxy, make_rig([cap_gib]), PlanOptions(n_ctx=ctx, experts_in_ram=experts_in_ram))
    assert p.mode == "experts_split"
    argv = speed_vs_fit.bench_argv(p.config)
    if experts_in_ram == "last" or cap_gib == 12:  # at 12 GiB the first layers' experts are whole layers
        assert ("-ncmoe" in argv) == (experts_in_ram == "first"), argv
    gpu = next(d for d in p.memory if d != "CPU")
    assert speed_vs_fit.predicted_vram(proxy, argv, ctx) == p.memory[gpu].total
    # a bigger ubatch on the same placement costs compute buffer: the grid rows that win by it are over the margin
    bigger = [*argv[:argv.index("-ub")], "-ub", "4096", *argv[argv.index("-ub") + 2:]]
    assert speed_vs_fit.predicted_vram(proxy, bigger, ctx) > p.memory[gpu].total + (256 << 20)


def test_llama_fits_semicolon_joined_overrides_are_matched_as_regexes(proxy):
    fit = ["-ngl", "49", "-ot", r"blk\.23\.ffn_down.*=CPU;blk\.24\.ffn_(up|down|gate_up|gate)_(ch|)exps=CPU"]
    none = speed_vs_fit.predicted_vram(proxy, ["-ngl", "49"], 8192)
    one_and_a_third = none - speed_vs_fit.predicted_vram(proxy, fit, 8192)
    layer = proxy.layers[24].expert_total
    assert layer + proxy.layers[23].expert_bytes["down"] == one_and_a_third


def _run(variant: str, tg: list[float]) -> dict:
    return {"variant": variant, "round": 0, "rows": [{"n_prompt": 2048, "n_gen": 0, "samples_ts": [9000.0]},
                                                    {"n_prompt": 0, "n_gen": 128, "samples_ts": tg}]}


def test_one_line_benched_under_two_names_is_reported_once_with_every_sample():
    line = ["-ngl", "-1", "-fa", "on", "-ub", "1024", "-t", "16"]
    cell = {"variants": {"moetui plan (chat)": line, "moetui tuned": [*line[:-2], "-t", "8"],
                         "fit": ["-ngl", "49"]},
            "runs": [_run("moetui plan (chat)", [66.0, 68.0]), _run("moetui tuned", [60.0, 61.0]),
                     _run("fit", [61.0, 62.0])]}
    summ = speed_vs_fit.summarise_cell(cell)
    plan_row, tuned_row = summ["moetui plan (chat)"], summ["moetui tuned"]
    assert plan_row["median"]["tg"] == tuned_row["median"]["tg"] == pytest.approx(63.5)
    assert plan_row["pooled_with"] == ["moetui tuned"] and tuned_row["pooled_with"] == ["moetui plan (chat)"]
    assert plan_row["decode_by_process"] == [67.0, 60.5]
    assert summ["fit"]["pooled_with"] == [] and summ["fit"]["median"]["tg"] == pytest.approx(61.5)
