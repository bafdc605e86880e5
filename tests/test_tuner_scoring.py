"""Comparing measurements with their spread, objectives, and which dimensions a change touches."""

from __future__ import annotations

import pytest

from moetui.config import RunConfig
from moetui.runtime.bench import BenchResult
from moetui.sizing.overrides import n_cpu_moe_overrides
from moetui.tuner import TuneOptions
from moetui.tuner.engine import changed_dimensions
from moetui.tuner.scoring import better, not_worse, robust_spread, score


def b(pp: list[float], tg: list[float]) -> BenchResult:
    return BenchResult(512, 128, len(tg), pp, tg)


def test_objectives():
    r = b([100.0, 100.0, 100.0], [10.0, 10.0, 10.0])
    assert score(r, "decode", 512, 128) == 10.0
    assert score(r, "prefill", 512, 128) == 100.0
    # balanced: 640 tokens in 512/100 + 128/10 seconds
    assert score(r, "balanced", 512, 128) == pytest.approx(640 / (5.12 + 12.8))


def test_one_stalled_repetition_does_not_hide_a_real_gain():
    base = b([100.0] * 5, [10.0, 10.1, 9.9, 10.0, 10.05])
    cand = b([100.0] * 5, [11.0, 11.1, 10.9, 2.0, 11.05])  # one repetition stalled by another process
    assert robust_spread(cand.tg_tok_s) < 0.2
    assert better(cand, base, "decode", 512, 128)
    assert not better(base, cand, "decode", 512, 128)


def test_gains_inside_the_noise_are_not_taken():
    base = b([100.0] * 3, [10.0, 9.0, 11.0])
    cand = b([100.0] * 3, [10.5, 9.5, 11.5])
    assert not better(cand, base, "decode", 512, 128)
    assert not_worse(cand, base, "decode", 512, 128) and not_worse(base, cand, "decode", 512, 128)
    # under 1% is never a gain, however tight the spread
    assert not better(b([1.0] * 3, [10.05] * 3), b([1.0] * 3, [10.0] * 3), "decode", 512, 128)


def test_a_tie_on_the_objective_goes_to_the_other_figure():
    base = b([100.0, 100.5, 99.5], [10.0, 10.0, 10.0])
    cand = b([130.0, 130.5, 129.5], [10.0, 10.0, 10.0])
    assert better(cand, base, "decode", 512, 128)
    assert not better(b([101.0] * 3, [10.0] * 3), base, "decode", 512, 128)  # +1% prompt: not enough


def test_changed_dimensions():
    a = RunConfig(model_path="m")
    assert changed_dimensions(a, a) == set()
    c = a.replace(overrides=n_cpu_moe_overrides(3), n_ubatch=256, flash_attn="on", n_threads=4)
    assert changed_dimensions(a, c) == {"placement", "ubatch", "flash_attn", "threads"}
    assert changed_dimensions(a, a.replace(cache_type_k="q8_0", cache_type_v="q8_0", load_mode="none")) == {"cache_type", "load_mode"}


def test_options_are_validated():
    from moetui.errors import ConfigError

    for bad in ({"objective": "speed"}, {"budget_s": 0}, {"reps": 0}, {"reps": 2}, {"dimensions": ("warp",)}, {"n_ctx": -1},
                {"vram_margin_bytes": -1}, {"max_probes": 0}, {"n_gen": 0}):
        with pytest.raises(ConfigError):
            TuneOptions(**bad).validate()
    TuneOptions(reps=3).validate()  # the median of three is the least the issue allows
