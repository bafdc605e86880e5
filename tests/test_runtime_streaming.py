"""Streaming at a constant cost per token: the stop-string scanner, the UTF-8 hold-back, and a real
sampled reply of the tiny proxy (whose random weights emit runs of byte-fallback tokens that never form
a character, the case that made llama-cpp-python's streaming quadratic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moetui.config import RunConfig
from moetui.runtime.client import DoneEvent, ModelWorker, TokenEvent
from moetui.runtime.streaming import StopScanner


def feed(scanner: StopScanner, pieces: list[str]) -> tuple[str, bool]:
    out, stopped = "", False
    for p in pieces:
        text, stopped = scanner.push(p)
        out += text
        if stopped:
            break
    return out + scanner.flush(), stopped


def test_stop_string_split_across_pieces_is_cut_and_never_released() -> None:
    out, stopped = feed(StopScanner(["<|im_end|>"]), ["Hello", " world<|im", "_en", "d|>tail"])
    assert (out, stopped) == ("Hello world", True)


def test_text_that_only_looks_like_a_stop_start_is_released() -> None:
    s = StopScanner(["STOP"])
    assert s.push("abcST") == ("abc", False)  # "ST" may begin STOP: held
    assert s.push("x") == ("STx", False)  # it did not
    assert s.pending == ""
    assert feed(StopScanner([]), ["a", "b"]) == ("ab", False)


def test_held_text_never_exceeds_the_longest_stop() -> None:
    s = StopScanner(["ab", "xyz"])
    for _ in range(1000):
        s.push("xy")
        assert len(s.pending) <= 2


@pytest.fixture(scope="module")
def worker(tiny_moe: Path):
    with ModelWorker() as w:
        w.start(RunConfig(model_path=str(tiny_moe), n_ctx=4096, n_gpu_layers=0))
        yield w


def test_a_long_sampled_reply_streams_every_piece_and_stops_at_max_tokens(worker: ModelWorker) -> None:
    pieces, done = [], None
    for ev in worker.generate("Tell me a story", max_tokens=1500, temperature=0.8, top_p=0.95, seed=3):
        if isinstance(ev, TokenEvent):
            pieces.append(ev.text)
        elif isinstance(ev, DoneEvent):
            done = ev
    assert done is not None and done.finish_reason == "length" and done.stats.tokens == 1500
    assert "".join(pieces) == done.text
    # byte tokens that never complete a character become U+FFFD at once instead of being held back to
    # the end: the text arrives all along (in batches of at most TOKEN_BATCH_S), not in one piece
    assert len(pieces) >= 10 and max(len(p) for p in pieces) < len(done.text) / 4


def test_the_same_seed_gives_the_same_reply_and_a_chat_reuses_the_kv_prefix(worker: ModelWorker) -> None:
    def reply(seed: int) -> DoneEvent:
        evs = list(worker.chat([{"role": "user", "content": "hi"}], max_tokens=64, temperature=0.8, seed=seed))
        assert isinstance(evs[-1], DoneEvent)
        return evs[-1]

    a, b, c = reply(7), reply(7), reply(8)
    assert a.text == b.text
    assert a.text != c.text


def test_a_stop_string_ends_the_reply_before_it(worker: ModelWorker) -> None:
    full = [e for e in worker.generate("x", max_tokens=200, temperature=0.0) if isinstance(e, DoneEvent)][0].text
    assert len(full) > 20
    stop = full[10:14]
    cut = [e for e in worker.generate("x", max_tokens=200, temperature=0.0, stop=[stop])
           if isinstance(e, DoneEvent)][0]
    assert cut.finish_reason == "stop"
    assert cut.text == full[:full.index(stop)]
