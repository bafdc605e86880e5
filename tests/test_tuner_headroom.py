"""A probe that only moves experts is judged against the VRAM headroom before it loads: a measured config's
VRAM plus the bytes of the experts it moves (moetui.tuner.headroom), checked by the real ProbeRunner."""

from __future__ import annotations

import pytest

from moetui.config import ALL_PARTS, RunConfig
from moetui.model.virtual import model_info_for_shape
from moetui.sizing.overrides import cpu_expert_overrides, experts_in_ram_bytes
from moetui.sizing.workload import WORKLOADS
from moetui.tuner.events import ProbeFinished, ProbeStarted
from moetui.tuner.headroom import HEADROOM_SLACK, predicted_vram
from moetui.tuner.options import TuneOptions
from moetui.tuner.probe import Probe, ProbeStatus
from moetui.tuner.runner import ProbeRunner
from moetui.tuner.scoring import Objective
from moetui.tuner.store import ProfileStore

GIB = 1 << 30


@pytest.fixture(scope="module")
def qwen():
    return model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")


def _last(n: int, down_of: int | None = None) -> dict[int, set[str]]:
    cpu: dict[int, set[str]] = {il: set(ALL_PARTS) for il in range(48 - n, 48)}
    if down_of is not None:
        cpu[down_of] = {"down"}
    return cpu


def _cfg(cpu: dict[int, set[str]], **kw) -> RunConfig:
    return RunConfig(model_path="/m.gguf", n_ctx=8192, n_ubatch=1024, overrides=cpu_expert_overrides(cpu), **kw)


def test_expert_bytes_in_ram_follow_the_overrides(qwen):
    layer = qwen.layers[30].expert_total
    assert experts_in_ram_bytes(qwen, []) == 0
    assert experts_in_ram_bytes(qwen, _cfg(_last(1)).overrides) == qwen.layers[47].expert_total
    assert experts_in_ram_bytes(qwen, _cfg(_last(24)).overrides) == sum(qwen.layers[i].expert_total for i in range(24, 48))
    split = experts_in_ram_bytes(qwen, _cfg(_last(23, down_of=24)).overrides)
    assert split - experts_in_ram_bytes(qwen, _cfg(_last(23)).overrides) == qwen.layers[24].expert_bytes["down"] < layer


def test_the_prediction_is_a_measured_config_plus_the_experts_it_moves(qwen):
    def ram(c: RunConfig) -> int | None:
        return experts_in_ram_bytes(qwen, c.overrides)

    plan = Probe(0, _cfg(_last(23, down_of=24)), {}, "plan", status=ProbeStatus.OK)
    plan.vram_bytes = int(10.85 * GIB)
    one_more = _cfg(_last(23), n_threads=8)  # threads do not move VRAM
    assert predicted_vram([plan], one_more, ram) == plan.vram_bytes + qwen.layers[24].expert_bytes["down"]
    assert predicted_vram([plan], _cfg(_last(22)), ram) == plan.vram_bytes + ram(plan.config) - ram(_cfg(_last(22)))
    # another ubatch or cache type changes the buffers as well: no prediction from this probe
    assert predicted_vram([plan], _cfg(_last(22)).replace(n_ubatch=2048), ram) is None
    assert predicted_vram([plan], _cfg(_last(22)).replace(cache_type_k="q8_0"), ram) is None
    # a skipped probe's figure is a prediction, never a reference
    guess = Probe(1, _cfg(_last(21)), {}, "guess", status=ProbeStatus.SKIPPED, error_kind="headroom")
    guess.vram_bytes = 1
    assert predicted_vram([plan, guess], _cfg(_last(22)), ram) == predicted_vram([plan], _cfg(_last(22)), ram)


def test_the_runner_skips_a_probe_predicted_over_the_limit_without_loading_it(qwen, tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    events = []
    runner = ProbeRunner("/m.gguf", None, TuneOptions(), Objective("chat", WORKLOADS["chat"], 2048, 128), store,
                         "rig", "model")
    runner.start_clock(events.append, None)
    runner.vram_limit = 11 * GIB
    runner.experts_in_ram_bytes = lambda c: experts_in_ram_bytes(qwen, c.overrides)
    plan = runner.new_probe(_cfg(_last(23, down_of=24)), {}, label="plan")
    plan.status, plan.vram_bytes = ProbeStatus.OK, int(10.84 * GIB)

    over = runner.new_probe(_cfg(_last(22)), {"experts_in_ram_last": 22})  # a whole layer more: +0.4 GiB
    assert not runner.open(over)
    assert over.status == ProbeStatus.SKIPPED and over.error_kind == "headroom" and "not loaded" in over.error
    assert over.vram_bytes > runner.vram_limit + HEADROOM_SLACK
    assert [type(e) for e in events[-2:]] == [ProbeStarted, ProbeFinished]
    assert not store.is_failed("rig", "model", over.config)  # a wider margin would allow it: not remembered

    # just over the limit (what the prediction's own error covers) is still loaded and measured
    runner.vram_limit = int(10.84 * GIB) + qwen.layers[24].expert_bytes["down"] - (HEADROOM_SLACK // 2)
    near = runner.new_probe(_cfg(_last(23)), {"experts_in_ram_last": 23})
    assert runner.open(near) and near.status == ProbeStatus.RUNNING
