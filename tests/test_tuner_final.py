"""The final round's pure parts: who is measured again side by side, in what order, and who wins."""

from __future__ import annotations

from moetui.config import RunConfig
from moetui.runtime.bench import BenchResult
from moetui.tuner import Probe
from moetui.tuner.final import contenders, order, pick
from moetui.tuner.scoring import better, not_worse, score
from moetui.tuner.store import config_key


def probe(i: int, tg: list[float], pp: list[float] | None = None, role: str = "search", **cfg) -> Probe:
    b = BenchResult(64, 16, len(tg), pp or [100.0] * len(tg), tg)
    return Probe(i, RunConfig(model_path="/m.gguf", **cfg), {}, f"p{i}", status="ok", bench=b,
                 score=score(b, "decode", 64, 16), role=role)


def key(p: Probe) -> str:
    return config_key(p.config)


def cmp_better(a: Probe, b: Probe) -> bool:
    return better(a.bench, b.bench, "decode", 64, 16)


def cmp_overlaps(a: Probe, b: Probe) -> bool:
    return not_worse(a.bench, b.bench, "decode", 64, 16)


def test_order_mirrors_every_other_round():
    assert order(3, 4) == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]
    assert order(2, 2) == [0, 1, 1, 0]
    # a linear drift (slower each turn) costs every contender the same in total over mirrored pairs
    turns = order(3, 4)
    assert len({sum(t for t, who in enumerate(turns) if who == c) for c in range(3)}) == 1


def test_the_start_always_takes_part_and_an_overlapping_runner_up_too():
    start = probe(0, [100.0, 101.0, 99.0], role="plan")
    best = probe(1, [104.0, 110.0, 98.0], load_mode="none")
    close = probe(2, [103.0, 109.0, 97.0], flash_attn="on")  # inside the winner's spread
    far = probe(3, [50.0, 51.0, 49.0], n_threads=1)
    who = contenders(best, start, [start, best, close, far], cmp_overlaps, key)
    assert who == [best, start, close]
    # a runner-up clearly below the winner is not measured again; the start still is
    clear = probe(1, [150.0, 151.0, 149.0], load_mode="none")
    assert contenders(clear, start, [start, clear, far], cmp_overlaps, key) == [clear, start]
    # nothing won: the start is the winner, measured once, beside the best other probe if that overlaps
    assert contenders(start, start, [start, far], cmp_overlaps, key) == [start]
    assert contenders(start, start, [start, close], cmp_overlaps, key) == [start, close]


def test_draft_and_failed_probes_never_enter():
    start = probe(0, [100.0] * 3, role="plan")
    best = probe(1, [101.0] * 3, flash_attn="on")
    ref = probe(2, [100.5] * 3, role="reference", n_threads=1)
    bad = probe(3, [100.5] * 3, n_threads=2)
    bad.status = "failed"
    assert contenders(best, start, [start, best, ref, bad], cmp_overlaps, key) == [best, start]


def test_the_highest_median_wins_the_final():
    # the search's winner was measured in a quiet minute; side by side it is slower than the start
    winner = probe(5, [92.0, 90.0, 95.0, 91.0])
    start = probe(6, [101.0, 99.0, 103.0, 100.0])
    assert pick([winner, start], cmp_better) is start
    # equal medians: the first (the search's winner) stays
    a, b = probe(7, [100.0] * 4), probe(8, [100.0] * 4)
    assert pick([a, b], cmp_better) is a
    # within the noise on decode but clearly ahead on prompt speed: the usual tie rule still applies
    c = probe(9, [99.5, 100.5, 100.0, 99.0], pp=[200.0] * 4)
    d = probe(10, [100.2, 100.8, 100.4, 99.6], pp=[100.0] * 4)
    assert pick([d, c], cmp_better) is c
