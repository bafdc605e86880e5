"""The tuner on a real tiny MoE proxy in real llama-cpp-python workers: measures the plan and candidates,
reuses the loaded model for context-level changes, records failures and never retries them, survives a
crashing probe, stops on cancel with the best so far, saves and returns the profile."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from moetui.config import RunConfig
from moetui.hardware import detect_rig
from moetui.sizing.overrides import layers_from_overrides
from moetui.sizing.workload import WORKLOADS
from moetui.hardware.rig import CPUInfo, GPUInfo, LlamaBuildInfo, MemoryInfo, Rig
from moetui.resolver import saved_profile
from moetui.resolver.tuning import tune
from moetui.sizing.settings import Settings
from moetui.tuner import (
    ProbeFinished,
    ProbeStarted,
    ProfileStore,
    TuneFinished,
    TuneOptions,
    TuneProgress,
)
from moetui.tuner.engine import Tuner
from moetui.tuner.placement_axis import PlacementAxis
from moetui.tuner.probe import ProbeRole
from moetui.tuner.runner import load_key
from moetui.tuner.search import Search

FAST = {"n_prompt": 64, "n_gen": 16, "reps": 3, "budget_s": 90.0, "max_rounds": 4}


@pytest.fixture(scope="module")
def rig() -> Rig:
    return detect_rig(measure_bandwidth=False)


@pytest.fixture(scope="module")
def tuned(tiny_moe, rig, tmp_path_factory):
    """One tune shared by the tests that only read its result."""
    root = tmp_path_factory.mktemp("tuned")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOETUI_DATA_DIR", str(root / "data"))
        mp.setenv("MOETUI_CACHE_DIR", str(root / "cache"))
        store = ProfileStore(root / "profiles")
        events: list = []
        # balanced: smaller ubatches are tried too (for decode they only slow prompts and are skipped)
        opts = TuneOptions(dimensions=("threads", "ubatch", "flash_attn"), objective="balanced",
                           **{**FAST, "n_prompt": 256})
        result = Tuner(str(tiny_moe), rig, opts, store=store).run(events.append)
    return result, events, store


def test_tune_measures_the_plan_and_candidates(tuned):
    result, _, _ = tuned
    assert result.plan_probe is result.probes[0] and result.plan_probe.role == "plan"
    assert result.predicted["decode_tps"] and result.predicted["prompt_tps"]
    assert result.best in result.probes and result.best.ok and result.best.score
    assert result.stopped in ("converged", "budget")
    ok = [p for p in result.probes if p.status == "ok"]
    assert len(ok) >= 4
    for p in ok:
        assert len(p.bench.tg_tok_s) >= 3 and len(p.bench.pp_tok_s) >= 3
        # objective "balanced": tokens per second over one request of n_prompt + n_gen tokens
        assert p.score == pytest.approx(272 / (256 / p.bench.pp_median + 16 / p.bench.tg_median))
    # thread counts were probed, each side by side with the incumbent, without reloading the model
    threads = [p for p in result.probes if "n_threads" in p.changes and p.role == "search"]
    assert threads and not any(p.reloaded for p in threads
                               if load_key(p.config) == load_key(result.plan_probe.config))
    # every comparison left its evidence: both sides' medians, spreads and repetitions
    compared = [d for d in result.decisions if d.dimension == "threads"]
    assert compared and all(d.incumbent.reps >= 3 and d.candidate.reps >= 3 and d.unit == "tok/s" for d in compared)
    assert {d.candidate.index for d in compared} <= {p.index for p in threads}
    assert {p.config.n_threads for p in threads} >= {1}
    # ubatches below the measured prompt length (256) were tried; the winner's is among them or the plan's
    assert {p.config.n_ubatch for p in result.probes if "n_ubatch" in p.changes} <= {128, 256}
    assert any("n_ubatch" in p.changes for p in result.probes)
    assert result.efficiency and result.efficiency["measured_over_predicted"]["decode"] > 0


def test_events_tell_the_story_in_order(tuned):
    result, events, _ = tuned
    assert isinstance(events[0], TuneProgress) and isinstance(events[-1], TuneFinished)
    assert events[-1].result is result
    started = [e.probe.index for e in events if isinstance(e, ProbeStarted)]
    finished = [e.probe.index for e in events if isinstance(e, ProbeFinished)]
    assert started == finished == [p.index for p in result.probes]
    for e in events:
        if isinstance(e, ProbeFinished):
            assert e.elapsed_s >= 0 and (e.eta_s is None or e.eta_s >= 0)
            assert e.best is None or e.best.status == "ok"
    dones = [e.n_done for e in events if isinstance(e, ProbeFinished)]
    assert dones == sorted(dones) and dones[-1] == len(result.probes)


def test_the_profile_is_saved_and_found_again(tuned, tiny_moe, rig):
    result, _, store = tuned
    saved = store.get(result.rig_fingerprint, result.model_id, result.llama_version)
    assert saved is not None and saved.best.config.to_dict() == result.best.config.to_dict()
    assert [p.to_dict() for p in saved.probes] == [p.to_dict() for p in result.probes]
    again = saved_profile(rig, result.model_id, str(tiny_moe), store=store)
    assert again is not None and again.best.config.to_dict() == result.best.config.to_dict()


def test_a_failed_config_is_recorded_and_never_tried_again(tiny_moe, rig, tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    # a quantized V cache without flash attention: llama.cpp refuses to create the context
    bad = RunConfig(model_path=str(tiny_moe), n_ctx=256, cache_type_v="q8_0", flash_attn="off")
    t1 = Tuner(str(tiny_moe), rig, TuneOptions(**FAST), store=store)
    p = t1.measure(bad, {"cache_type": "q8_0"})
    assert p.status == "failed" and p.error_kind == "context" and p.error
    assert store.is_failed(t1.rig_fingerprint, t1.model_id, bad)
    t2 = Tuner(str(tiny_moe), rig, TuneOptions(**FAST), store=store)
    start = time.monotonic()
    p2 = t2.measure(bad.replace(notes=["same config, other notes"]), {})
    assert p2.status == "skipped" and p2.error_kind == "failed_before"
    assert time.monotonic() - start < 1.0 and t2.runner._worker is None  # no worker was started for it


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone, or a zombie not yet reaped (e.g. a short-lived probe subprocess)
        return ""


def _worker_pids() -> set[int]:
    me = psutil.Process()
    return {c.pid for c in me.children(recursive=True) if "moetui.runtime.worker_main" in _cmdline(c)}


def test_a_crashing_probe_is_recorded_and_the_search_goes_on(tiny_moe, rig, tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    killed: list[int] = []

    def on_event(ev):
        # kill the worker (as the OOM killer would) while the second probe measures
        if isinstance(ev, ProbeStarted) and ev.probe.index == 1 and not killed:
            def later():
                time.sleep(0.1)
                for pid in _worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            threading.Thread(target=later, daemon=True).start()

    opts = TuneOptions(n_prompt=256, n_gen=32, reps=3, budget_s=90.0, dimensions=("threads", "flash_attn"))
    result = Tuner(str(tiny_moe), rig, opts, store=store).run(on_event)
    assert killed
    # the kill lands on the candidate's turn (the probe fails as a crash and is remembered) or on the
    # incumbent's re-measurement (the comparison is interrupted and says why): either way it is named
    crashed = [p for p in result.probes if p.status in ("failed", "skipped") and "SIGKILL" in (p.error or "")]
    assert crashed, [(p.label, p.status, p.error) for p in result.probes]
    if crashed[0].status == "failed":
        assert crashed[0].error_kind == "crash"
        assert store.is_failed(result.rig_fingerprint, result.model_id, crashed[0].config)
    after = [p for p in result.probes if p.index > crashed[0].index]
    assert any(p.status == "ok" for p in after)  # the next probe started a fresh worker
    assert result.best.ok and result.best is not crashed[0]


def test_cancel_stops_with_the_best_so_far(tiny_moe, rig, tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    cancel = threading.Event()

    def on_event(ev):
        if isinstance(ev, ProbeFinished) and ev.n_done >= 2:
            cancel.set()

    result = Tuner(str(tiny_moe), rig, TuneOptions(dimensions=("threads", "ubatch"), **FAST),
                   store=store).run(on_event, cancel)
    assert result.stopped == "cancelled" and result.best.ok
    assert len([p for p in result.probes if p.status == "ok"]) == 2
    assert store.get(result.rig_fingerprint, result.model_id, result.llama_version).stopped == "cancelled"
    assert not _worker_pids()


def test_tune_returns_the_saved_profile_at_once_unless_retune(tiny_moe, rig, tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    opts = TuneOptions(dimensions=("flash_attn",), max_probes=2, **FAST)
    first = tune(str(tiny_moe), rig, opts, store=store)
    assert not first.from_cache and len(first.probes) <= 2
    start = time.monotonic()
    again = tune(str(tiny_moe), rig, opts, store=store)
    assert again.from_cache and time.monotonic() - start < 2.0
    assert again.best.config.to_dict() == first.best.config.to_dict()
    opts.retune = True
    fresh = tune(str(tiny_moe), rig, opts, store=store)
    assert not fresh.from_cache and fresh.created > first.created


def topts(**kw) -> TuneOptions:
    """TuneOptions with the user's settings among the keywords (context, margin, workload) in its Settings."""
    settings = {k: kw.pop(k) for k in ("n_ctx", "vram_margin_bytes", "workload", "draft_path") if k in kw}
    return TuneOptions(Settings(**settings), **kw)


def _fake_gpu_rig(vram: int) -> Rig:
    """A GPU rig as the sizing core sees it. This CPU-only llama.cpp build puts 'GPU' tensors on the CPU too,
    so the loads and measurements are real while the placement search runs as it would on a GPU."""
    return Rig(name="fake GPU rig", gpus=[GPUInfo(name="Fake GPU", vendor="nvidia", vram_total_bytes=vram,
                                                  vram_free_bytes=vram, mem_bandwidth_gbs=1000, pcie_bandwidth_gbs=25)],
               cpu=CPUInfo(physical_cores=2, logical_cores=2), memory=MemoryInfo(total_bytes=8 << 30, available_bytes=6 << 30),
               build=LlamaBuildInfo(installed=True, version="test", gpu_offload=True, backends=["CUDA", "CPU"]),
               ram_bandwidth_gbs=20, fingerprint="rig-fake-gpu")


def _split_vram(info, axis) -> tuple[int, int]:
    """The smallest fake VRAM for which the plan keeps some, not all, experts in RAM (sizing is pure: ms)."""
    from moetui.sizing.plan import PlanOptions, plan

    for mib in range(64, 4096):
        p = plan(info, _fake_gpu_rig(mib << 20), PlanOptions(n_ctx=1024, vram_margin_bytes=0))
        pos = axis.position(p.config)
        if p.mode == "experts_split" and pos is not None and 0 < pos < axis.max:
            return mib << 20, pos
    raise AssertionError("no VRAM size splits the experts")


def test_placement_is_searched_from_the_plan_position(tiny_moe, tmp_path):
    from moetui.model.inspect import inspect_file

    info = inspect_file(tiny_moe)
    axis = PlacementAxis.for_model(info)
    vram, pos0 = _split_vram(info, axis)
    rig = _fake_gpu_rig(vram)
    opts = topts(dimensions=("placement",), n_ctx=1024, vram_margin_bytes=0, max_probes=4, **FAST)
    tuner = Tuner(str(tiny_moe), rig, opts, store=ProfileStore(tmp_path / "p"))
    result = tuner.run()
    assert tuner.plan.mode == "experts_split"
    assert axis.position(result.plan_probe.config) == pos0
    placed = [p for p in result.probes if "experts_in_ram_last" in p.changes and p.role == "search"]
    assert placed, "no placement probe"
    # first whole layers fewer in RAM (down), at the plan's end of the model: the last layers
    first = pos0 - pos0 % 3 if pos0 % 3 else pos0 - 3
    assert axis.position(placed[0].config) == first and placed[0].changes == {"experts_in_ram_last": first // 3}
    in_ram = layers_from_overrides(placed[0].config.overrides)
    assert sorted(in_ram) == list(range(info.n_layers - first // 3, info.n_layers))
    assert all(p.reloaded for p in placed)  # a placement change needs a reload
    assert all(p.status == "ok" for p in placed)
    assert result.baseline is None  # llama.cpp's defaults would not fit this GPU: not measured


def test_a_saved_profile_is_reused_only_at_its_context_or_below(tiny_moe, rig, tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    events: list = []

    def opts(**kw) -> TuneOptions:
        return topts(dimensions=("flash_attn",), max_probes=1, **{**FAST, **kw})

    first = tune(str(tiny_moe), rig, opts(n_ctx=256), store=store)
    assert not first.from_cache and first.best.config.n_ctx == 256 and first.settings.n_ctx == 256
    assert tune(str(tiny_moe), rig, opts(n_ctx=256), store=store).from_cache
    # a CPU rig keeps no VRAM: another margin changes nothing
    assert tune(str(tiny_moe), rig, opts(n_ctx=256, vram_margin_bytes=2 << 30), store=store).from_cache
    # a larger minimum context must not get the profile tuned at 256
    bigger = tune(str(tiny_moe), rig, opts(n_ctx=1024), store=store, on_event=events.append)
    assert not bigger.from_cache and bigger.best.config.n_ctx >= 1024
    assert any(isinstance(e, TuneProgress) and "below the 1024" in e.message for e in events)
    # it replaced the smaller one, and answers anything up to its own context
    again = tune(str(tiny_moe), rig, opts(n_ctx=512), store=store)
    assert again.from_cache and again.best.config.n_ctx == 1024
    assert not tune(str(tiny_moe), rig, opts(n_ctx=512, objective="prefill"), store=store).from_cache
    # a profile tuned for another workload is tuned again, and the tune says why
    events.clear()
    other = tune(str(tiny_moe), rig, opts(n_ctx=512, objective="prefill", workload=WORKLOADS["decode"]), store=store,
                 on_event=events.append)
    assert not other.from_cache and other.workload == WORKLOADS["decode"]
    assert any(isinstance(e, TuneProgress) and "tuned for chat: 2,048 new prompt tokens" in e.message
               and "not decode" in e.message for e in events)


def test_a_larger_vram_margin_is_tuned_again(tiny_moe, tmp_path):
    rig = _fake_gpu_rig(8 << 30)  # everything fits: the margin is the only thing that changes
    store = ProfileStore(tmp_path / "profiles")

    def opts(margin: int) -> TuneOptions:
        return topts(dimensions=("flash_attn",), max_probes=1, n_ctx=256, vram_margin_bytes=margin, **FAST)

    first = tune(str(tiny_moe), rig, opts(0), store=store)
    assert not first.from_cache and first.settings.vram_margin_bytes == 0
    assert tune(str(tiny_moe), rig, opts(0), store=store).from_cache
    more = tune(str(tiny_moe), rig, opts(256 << 20), store=store)
    assert not more.from_cache and more.settings.vram_margin_bytes == 256 << 20
    assert tune(str(tiny_moe), rig, opts(0), store=store).from_cache  # it kept more free than 0 asks


def test_load_modes_include_mlock_and_the_winner_is_measured_beside_the_start(tiny_moe, rig, tmp_path):
    tuner = Tuner(str(tiny_moe), rig, TuneOptions(dimensions=("load_mode",), **FAST), store=ProfileStore(tmp_path / "p"))
    result = tuner.run()
    modes = {p.config.load_mode for p in result.probes if p.role == "search" and p.ok}
    assert "none" in modes
    # root (as here and in CI) may lock, and RAM holds the tiny model many times over
    assert tuner.mlock_possible() and "mmap+mlock" in modes
    finals = [p for p in result.probes if p.role == "final"]
    key = tuner.runner.key
    # the start: llama.cpp's defaults where they ran (they may differ from the plan), else the plan
    defaults = [p for p in result.probes if p.role == "baseline" and p.ok]
    start = defaults[0] if defaults else result.plan_probe
    if not finals:  # nothing beat the start beyond the noise: the answer is the start itself
        assert key(result.best.config) == key(start.config)
        assert result.stopped in ("converged", "budget")  # (a machine shared with other work may spend it)
        return
    assert {key(p.config) for p in finals} == {key(start.config), key(finals[0].config)}
    assert result.best in finals and (not defaults or result.baseline in finals)
    for p in finals:
        assert p.ok and len(p.bench.tg_tok_s) >= 3 and len(p.bench.pp_tok_s) >= 3
    final = result.decisions[-1]
    assert final.dimension == "final" and final.incumbent.reps >= 3 and final.candidate.reps >= 3
    # a tie goes to the start when it is simpler; else the winner had to stay ahead measured beside it
    if final.verdict == "tie":
        assert (key(result.best.config) == key(start.config)) == (final.kept == "candidate")
    assert result.stopped in ("converged", "budget")


def _measured_start(tiny_moe, rig, tmp_path, objective: str, n_prompt: int):
    """A tuner with its search set up and the start (the plan) measured, for a final round driven by hand."""
    opts = topts(objective=objective, n_prompt=n_prompt, n_gen=8, reps=3, budget_s=90.0, n_ctx=512)
    tuner = Tuner(str(tiny_moe), rig, opts, store=ProfileStore(tmp_path / "p"))
    runner = tuner.prepare()
    runner.start_clock(None, threading.Event())
    try:
        # one thread each: other work on a shared machine slows multi-threaded prompts far more than the
        # setting under test could, and the tests are about the final comparison, not about threads
        start_cfg = tuner.start_config().replace(n_threads=1, n_threads_batch=1)
        tuner.search = Search(runner, tuner.space(start_cfg))
        start = runner.measure(start_cfg, {}, ProbeRole.PLAN)
    except BaseException:
        runner.close_all()
        raise
    return tuner, runner, start


def test_a_winner_that_only_ran_in_a_quiet_minute_loses_the_final(tiny_moe, rig, tmp_path):
    """The search's figures for a truly slower config are inflated (what drift on a shared machine does to
    one probe); measured side by side with the start, it must lose and the start's config be returned."""
    tuner, runner, start = _measured_start(tiny_moe, rig, tmp_path, "prefill", 256)
    try:
        # ubatch 1: a 256-token prompt in 256 pieces, about 10x slower than the plan's one ubatch
        slow = runner.measure(start.config.replace(n_ubatch=1, n_batch=8), {"n_ubatch": 1})
        assert start.ok and slow.ok and slow.pp < start.pp
        slow.bench.pp_tok_s = [x * 10 for x in slow.bench.pp_tok_s]
        tuner.search.incumbent = slow
        again = tuner.final_round(start)
    finally:
        runner.close_all()
    best = tuner.search.incumbent
    assert best.role == "final" and best.config.n_ubatch == start.config.n_ubatch
    assert again is best and again.pp > next(p for p in runner.probes if p.role == "final" and p is not again).pp
    d = tuner.search.decisions[-1]
    assert d.dimension == "final" and d.verdict == "better" and d.kept == "candidate"
    assert not _worker_pids()


def test_a_probe_cut_by_the_budget_is_not_called_a_hang(tiny_moe, rig, tmp_path):
    """The last probe's time limit is what is left of --budget: when that runs out mid-measurement the config
    did not hang (on an H200 a reload was killed for "no progress for 2 s"); it is skipped for the budget,
    and not remembered as failed."""
    from moetui.tuner.runner import HARD_LIMIT_SHARE, ProbeRunner
    from moetui.tuner.scoring import Objective

    budget = 4.0
    opts = TuneOptions(n_prompt=64, n_gen=4000, reps=5, budget_s=budget)  # 20000 tokens: outlives the limit
    store = ProfileStore(tmp_path / "profiles")
    runner = ProbeRunner(str(tiny_moe), rig, opts, Objective("decode", WORKLOADS["decode"], 64, 4000), store,
                         "rig", "model")
    runner.start_clock(None, None)
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=4096 + 64, n_threads=1, n_threads_batch=1)
    runner.ensure_loaded(cfg)  # loaded inside the budget; the bench then meets the hard limit
    try:
        probe = runner.measure(cfg, {})
    finally:
        runner.close_all()
    assert runner.elapsed() >= budget * (1 + HARD_LIMIT_SHARE) - 1.5, (probe.status, probe.error, probe.bench)
    assert probe.status == "skipped" and probe.error_kind == "budget", (probe.status, probe.error_kind, probe.error)
    assert "budget" in probe.error and "hang" not in probe.error
    assert not store.is_failed("rig", "model", cfg)


def test_a_winner_that_fails_its_final_check_is_not_the_answer(tiny_moe, rig, tmp_path):
    """A winner whose final check failed ("(final) (no proper reply) ✗") was saved as "+99% vs the plan":
    it gives way to the start, measured earlier, and a note says why."""
    broken = tmp_path / "truncated.gguf"
    broken.write_bytes(tiny_moe.read_bytes()[: tiny_moe.stat().st_size // 2])
    tuner, runner, start = _measured_start(tiny_moe, rig, tmp_path, "decode", 64)
    try:
        winner = runner.measure(start.config.replace(n_ubatch=256, n_batch=256), {"n_ubatch": 256})
        assert start.ok and winner.ok
        winner.config = winner.config.replace(model_path=str(broken))  # its final check cannot load it
        tuner.search.incumbent = winner
        tuner.final_round(start)
    finally:
        runner.close_all()
    finals = [p for p in runner.probes if p.role == "final"]
    assert finals and not finals[0].ok
    assert tuner.search.incumbent is start
    assert any("failed its final check" in n for n in tuner.notes)
