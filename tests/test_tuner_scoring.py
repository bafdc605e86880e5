"""Objectives read from measurements (seconds per turn of a workload by default), the robust spread, which
dimensions a change touches, and the options' validation."""

from __future__ import annotations

import pytest

from moetui.config import RunConfig
from moetui.runtime.bench import BenchResult
from moetui.sizing.overrides import n_cpu_moe_overrides
from moetui.sizing.workload import WORKLOADS, Workload
from moetui.sizing.settings import Settings
from moetui.tuner import TuneOptions
from moetui.tuner.options import measured_prompt
from moetui.tuner.scoring import Objective, robust_spread
from moetui.tuner.search import changed_dimensions


def b(pp: list[float], tg: list[float]) -> BenchResult:
    return BenchResult(512, 128, len(tg), pp, tg)


def test_objectives():
    r = b([100.0, 100.0, 100.0], [10.0, 10.0, 10.0])
    assert Objective("decode", WORKLOADS["chat"], 512, 128).value(r) == 10.0
    assert Objective("prefill", WORKLOADS["chat"], 512, 128).value(r) == 100.0
    # balanced: 640 tokens in 512/100 + 128/10 seconds
    assert Objective("balanced", WORKLOADS["chat"], 512, 128).value(r) == pytest.approx(640 / (5.12 + 12.8))
    # turn: the chat workload's 2048 prompt tokens and 256-token reply, lower is better
    chat = Objective("turn", WORKLOADS["chat"], 512, 128)
    assert chat.lower_is_better and chat.unit == "s/turn"
    assert chat.value(r) == pytest.approx(2048 / 100 + 256 / 10) == chat.turn_seconds(r)
    assert chat.samples(r) == [pytest.approx(2048 / 100 + 256 / 10)] * 3
    # the score is a rate for tables and plots: the turn's tokens over its seconds
    assert chat.score(r) == pytest.approx((2048 + 256) / (2048 / 100 + 256 / 10))
    # a pure decode workload ignores prompt speed
    decode = Objective("turn", WORKLOADS["decode"], 512, 128)
    assert decode.samples(b([1.0, 1000.0, 5.0], [10.0, 20.0, 10.0])) == [25.6, 12.8, 25.6]
    assert Objective("turn", Workload("x", 100, 0, 0), 512, 128).value(r) == pytest.approx(1.0)


def test_the_measured_prompt_follows_the_workload_capped():
    assert measured_prompt(2048, 5000.0, 300.0) == (2048, None)
    n, note = measured_prompt(16384, 5000.0, 300.0)
    assert n == 4096 and "4096 tokens of the workload's 16384" in note and "largest ubatch" in note
    n, note = measured_prompt(2048, 100.0, 60.0)  # 100 tok/s, a minute: 2048 tokens would take 20 s a repetition
    assert n == 512 and "budget" in note
    assert measured_prompt(0, 100.0, 60.0) == (512, None)  # decode: a short prompt, shown for information


def test_one_stalled_repetition_does_not_blow_up_the_robust_spread():
    assert robust_spread([11.0, 11.1, 10.9, 2.0, 11.05]) < 0.2
    assert robust_spread([10.0]) == 0.0


def test_changed_dimensions():
    a = RunConfig(model_path="m")
    assert changed_dimensions(a, a) == set()
    c = a.replace(overrides=n_cpu_moe_overrides(3), n_ubatch=256, flash_attn="on", n_threads=4)
    assert changed_dimensions(a, c) == {"placement", "ubatch", "flash_attn", "threads"}
    assert changed_dimensions(a, a.replace(cache_type_k="q8_0", cache_type_v="q8_0", load_mode="none",
                                           repack=False)) == {"cache_type", "load_mode", "repack"}


def test_options_are_validated():
    from moetui.errors import ConfigError

    for bad in ({"objective": "speed"}, {"budget_s": 0}, {"reps": 0}, {"reps": 2}, {"dimensions": ("warp",)},
                {"max_probes": 0}, {"n_gen": 0}, {"n_prompt": 0}, {"max_rounds": 2}, {"settings": "chat"}):
        with pytest.raises(ConfigError):
            TuneOptions(**bad).validate()
    for field, bad in (("n_ctx", -1), ("n_ctx", 5), ("vram_margin_bytes", -1), ("workload", "chat")):
        with pytest.raises(ConfigError) as refused:  # the user's settings: validated once, field by field
            Settings(**{field: bad})
        assert refused.value.field == field
    TuneOptions(reps=3).validate()  # the median of three is the least the issue allows
    assert TuneOptions().objective == "turn" and TuneOptions().workload == WORKLOADS["chat"]
