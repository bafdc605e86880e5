"""The model worker against real tiny GGUFs and real processes: events, stats, failures, no orphans."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from moetui.config import RunConfig
from moetui.errors import ConfigError, ModelFileError, WorkerError
from moetui.runtime.client import DoneEvent, ErrorEvent, ModelWorker, StatsEvent, TokenEvent, collect


def _children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def worker(tiny_moe: Path):
    w = ModelWorker(stall_timeout=60)
    w.start(RunConfig(model_path=str(tiny_moe), n_ctx=4096, n_threads=1, n_threads_batch=1))
    yield w
    w.close()


def test_generate_streams_tokens_then_done(worker: ModelWorker) -> None:
    events = list(worker.generate("hello world", max_tokens=16))
    assert any(isinstance(e, TokenEvent) for e in events)
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.finish_reason == "length"
    assert done.text == "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert done.stats.tokens == 16 and done.stats.n_prompt > 0
    assert done.stats.prompt_tok_s and done.stats.decode_tok_s_avg and done.stats.rss_bytes
    # greedy is deterministic
    assert collect(worker.generate("hello world", max_tokens=16)).text == done.text


def test_stats_arrive_at_least_twice_a_second(worker: ModelWorker) -> None:
    t0 = time.monotonic()
    events = list(worker.generate("the", max_tokens=3000, repeat_penalty=1.3))
    wall = time.monotonic() - t0
    stats = [e for e in events if isinstance(e, StatsEvent)]
    assert wall > 1.0, "generation too fast to judge the stats rate"
    assert len(stats) >= int(wall * 2) - 1
    assert any(s.stats.decode_tok_s for s in stats)


def test_chat_uses_template_and_stop(worker: ModelWorker) -> None:
    done = collect(worker.chat([{"role": "user", "content": "hello"}], max_tokens=8))
    assert done.stats.n_prompt > 5  # the ChatML wrapper tokens were added


def test_stop_cancels_and_worker_stays_usable(worker: ModelWorker) -> None:
    events = []
    for ev in worker.generate("the", max_tokens=100000):
        events.append(ev)
        if isinstance(ev, TokenEvent) and len(events) > 5:
            worker.stop()
    assert isinstance(events[-1], DoneEvent) and events[-1].cancelled
    assert collect(worker.generate("hello", max_tokens=4)).stats.tokens == 4


def test_abandoned_stream_leaves_worker_in_sync(worker: ModelWorker) -> None:
    gen = worker.generate("the", max_tokens=100000)
    for _ in range(3):
        next(gen)
    gen.close()
    assert collect(worker.generate("hello", max_tokens=4)).stats.tokens == 4


def test_sigkill_mid_generation_is_an_error_event(worker: ModelWorker) -> None:
    events = []
    for ev in worker.generate("the", max_tokens=100000):
        events.append(ev)
        if len(events) == 3:
            os.kill(worker.pid, signal.SIGKILL)
    err = events[-1]
    assert isinstance(err, ErrorEvent) and isinstance(err.error, WorkerError)
    assert "SIGKILL" in err.message and err.kind == "crash"
    assert "llama" in err.log_tail  # the tail of llama.cpp's log came with it
    assert not worker.alive and not _children()


def test_ggml_abort_is_an_error_with_the_assert_in_the_log(worker: ModelWorker) -> None:
    with pytest.raises(WorkerError) as info:
        worker.debug("debug_abort", timeout=30)
    assert "abort" in str(info.value)
    assert "GGML_ASSERT(debug_abort) failed" in info.value.log_tail
    # what it said reaches the user in one line, without llama.cpp's source path (issue 30)
    assert "llama.cpp aborted: GGML_ASSERT(debug_abort) failed" in str(info.value)
    assert "moetui-debug.c" not in str(info.value)


def test_hung_request_is_killed_after_the_stall_timeout(tiny_moe: Path) -> None:
    w = ModelWorker(stall_timeout=1.5)
    w.start(RunConfig(model_path=str(tiny_moe), n_ctx=256))
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as info:
        w.debug("debug_sleep", seconds=120)
    assert info.value.kind == "hang" and time.monotonic() - t0 < 10
    assert not w.alive and not _children()
    w.close()


def test_garbage_model_is_a_clean_error_with_log(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 1000)
    w = ModelWorker()
    with pytest.raises(ModelFileError) as info:
        w.start(RunConfig(model_path=str(bad)))
    assert "Failed to load model" in str(info.value)
    assert "magic" in w.log_tail()  # llama.cpp said why
    assert not w.alive and not _children()


def test_missing_model_and_bad_override_device(tiny_moe: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError):
        ModelWorker().start(RunConfig(model_path=str(tmp_path / "nope.gguf")))
    from moetui.config import TensorOverride

    with pytest.raises(ConfigError, match="NOPE0"):
        ModelWorker().start(RunConfig(model_path=str(tiny_moe), overrides=[TensorOverride("exps", "NOPE0")]))
    assert not _children()


def test_context_that_cannot_be_created_is_an_error(tiny_moe: Path) -> None:
    # a quantized V cache needs flash attention: llama.cpp refuses the context
    w = ModelWorker()
    with pytest.raises(WorkerError) as info:
        w.start(RunConfig(model_path=str(tiny_moe), n_ctx=256, flash_attn="off", cache_type_v="q8_0"))
    assert info.value.kind == "context" and info.value.log_tail
    assert not _children()


def test_reconfigure_keeps_weights_and_output(worker: ModelWorker) -> None:
    before = collect(worker.generate("hello world", max_tokens=12)).text
    load_log_size = worker.log_path.stat().st_size
    sizes = worker.reconfigure(n_ctx=1024, n_ubatch=64, n_batch=256)
    assert sizes.kv["CPU"] > 0 and not sizes.model  # a new context, no model buffers: weights not reloaded
    assert worker.log_path.stat().st_size > load_log_size
    assert collect(worker.generate("hello world", max_tokens=12)).text == before
    assert worker.set_threads(1, 2) == (1, 2)


def test_bench_returns_per_rep_rates(worker: ModelWorker) -> None:
    r = worker.bench(n_prompt=64, n_gen=16, reps=3)
    assert len(r.pp_tok_s) == 3 and len(r.tg_tok_s) == 3
    assert r.pp_median > 0 and r.tg_median > 0 and r.to_dict()["pp_min"] <= r.pp_median
    assert collect(worker.generate("hello", max_tokens=4)).stats.tokens == 4  # state was reset after bench


def test_close_leaves_no_orphans(tiny_moe: Path) -> None:
    ws = [ModelWorker() for _ in range(2)]
    for w in ws:
        w.start(RunConfig(model_path=str(tiny_moe), n_ctx=256))
    assert len(_children()) >= 2
    for w in ws:
        w.close()
    assert not _children()


def test_worker_usable_from_another_thread(worker: ModelWorker) -> None:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(collect(worker.generate("hello", max_tokens=4)).text))
    t.start()
    t.join(60)
    assert out and out[0]
