"""The search and its side-by-side comparisons against a fake world: a runner whose speeds come from a
formula plus injected noise (and a drift that hits whatever runs at the time). A tie keeps the simpler
config, a real gain wins, repetitions grow only while the intervals overlap, every decision records its
evidence, and the dimensions come in the order the workload's wait calls for."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from moetui.config import RunConfig
from moetui.runtime.bench import BenchResult
from moetui.sizing.workload import WORKLOADS
from moetui.tuner.duel import duel, order
from moetui.tuner.events import ProbesCompared
from moetui.tuner.evidence import Decision, Side, Verdict, judge
from moetui.tuner.probe import Probe, ProbeRole, ProbeStatus, short_label
from moetui.tuner.scoring import Objective
from moetui.tuner.search import Search, SearchSpace, changed_dimensions, order_dimensions
from moetui.tuner.store import config_key

CHAT = Objective("turn", WORKLOADS["chat"], 2048, 128)
DEFAULTS = RunConfig(model_path="/m.gguf", n_threads=8, n_threads_batch=8)


class FakeRunner:
    """Speeds = speed(config) x (1 + noise x gauss) x drift(turn number); no processes, no clock."""

    def __init__(self, speed: Callable[[RunConfig], tuple[float, float]], noise: float = 0.02, seed: int = 1,
                 drift: Callable[[int], float] = lambda t: 1.0, fails: Callable[[RunConfig], bool] = lambda c: False,
                 max_turns: int = 10_000, cheap: bool = True) -> None:
        self.cheap = cheap  # False: a GPU that reloads the weights at every switch, so turns come in blocks
        self.speed, self.noise, self.rng, self.drift, self.fails = speed, noise, random.Random(seed), drift, fails
        self.probes: list[Probe] = []
        self.best: Probe | None = None
        self.events: list[Any] = []
        self.turns = 0  # repetitions measured, all configs
        self.calls: list[tuple[str, int]] = []  # (config key, reps) per measurement
        self.max_turns = max_turns
        self._keys: dict[str, Probe] = {}

    def new_probe(self, config, changes, role=ProbeRole.SEARCH, label=None):
        p = Probe(len(self.probes), config, dict(changes), label or short_label(changes), role=role)
        self.probes.append(p)
        self._keys.setdefault(config_key(config), p)
        return p

    def open(self, probe):
        probe.status = ProbeStatus.RUNNING
        return True

    def turn(self, probe, reps, *, generate=False, record=True):
        if self.fails(probe.config):
            probe.status, probe.error_kind, probe.error = ProbeStatus.FAILED, "oom", "out of memory"
            return False
        pp0, tg0 = self.speed(probe.config)
        pp, tg = [], []
        for _ in range(reps):
            self.turns += 1
            d = self.drift(self.turns)
            pp.append(pp0 * d * (1 + self.noise * self.rng.gauss(0, 1)))
            tg.append(tg0 * d * (1 + self.noise * self.rng.gauss(0, 1)))
        self.calls.append((config_key(probe.config), reps))
        if probe.bench is None:
            probe.bench = BenchResult(2048, 128, reps, pp, tg)
        else:
            probe.bench.pp_tok_s += pp
            probe.bench.tg_tok_s += tg
            probe.bench.reps += reps
        return True

    def close(self, probe):
        if probe.status == ProbeStatus.RUNNING:
            probe.status = ProbeStatus.OK
            probe.score, probe.turn_s = CHAT.score(probe.bench), CHAT.turn_seconds(probe.bench)

    def known(self, cfg):
        return self._keys.get(config_key(cfg))

    def cheap_switch(self, a, b):
        return self.cheap

    def out_of_budget(self):
        return self.turns >= self.max_turns

    def emit(self, ev):
        self.events.append(ev)

    def fraction(self):
        return 0.0

    def elapsed(self):
        return 0.0

    def eta(self):
        return None


def _space(dims: list[str], **kw) -> SearchSpace:
    return SearchSpace(dimensions=dims, objective=CHAT, defaults=DEFAULTS, n_prompt=2048, cores=8, logical_cores=16,
                       **kw)


def _start(search: Search, cfg: RunConfig) -> Probe:
    search.consider(cfg, {}, "plan", role=ProbeRole.PLAN)
    assert search.incumbent is not None
    return search.incumbent


def test_a_real_gain_wins_and_its_evidence_is_recorded():
    # load mode none doubles prompt speed: a clear win on seconds per turn
    runner = FakeRunner(lambda c: (2000.0 if c.load_mode == "none" else 1000.0, 50.0))
    search = Search(runner, _space(["load_mode"]))
    _start(search, DEFAULTS)
    search.run()
    assert search.incumbent.config.load_mode == "none"
    d = next(d for d in search.decisions if d.candidate.label == "load none")
    assert d.verdict == Verdict.BETTER and d.kept == "candidate" and d.unit == "s/turn"
    # chat: 2048 prompt tokens and a 256-token reply: 1.02 + 5.12 s against 2.05 + 5.12 s
    assert abs(d.candidate.median - (2048 / 2000 + 256 / 50)) < 0.3
    assert abs(d.incumbent.median - (2048 / 1000 + 256 / 50)) < 0.3
    assert d.candidate.reps >= 3 and d.incumbent.reps >= 3 and d.candidate.spread >= 0
    assert any(isinstance(e, ProbesCompared) and e.decision is d for e in runner.events)
    assert Decision.from_dict(d.to_dict()) == d  # the evidence survives a saved profile


def test_a_difference_inside_the_noise_is_a_tie_and_keeps_the_simpler_config():
    # the plan changed threads and ubatch from llama.cpp's defaults; neither matters on this rig
    runner = FakeRunner(lambda c: (1000.0, 50.0), noise=0.03)
    plan = DEFAULTS.replace(n_threads=6, n_threads_batch=6, n_ubatch=1024)
    search = Search(runner, _space([]))
    _start(search, plan)
    assert search.consider(DEFAULTS, {"n_threads": 8}, "defaults", role=ProbeRole.BASELINE) == "same"
    d = search.decisions[-1]
    assert d.verdict == Verdict.TIE and d.kept == "candidate"  # the defaults: fewer changed settings
    assert search.incumbent.config == DEFAULTS
    # and a tie with a config that is not simpler keeps the incumbent
    search.consider(DEFAULTS.replace(flash_attn="on"), {"flash_attn": "on"}, "flash_attn")
    assert search.decisions[-1].verdict == Verdict.TIE and search.decisions[-1].kept == "incumbent"
    assert search.incumbent.config == DEFAULTS


def test_repetitions_grow_only_while_the_intervals_overlap():
    clear = FakeRunner(lambda c: (1000.0, 80.0 if c.flash_attn == "on" else 40.0), noise=0.01)
    s1 = Search(clear, _space(["flash_attn"], max_rounds=12))
    _start(s1, DEFAULTS)
    s1.run()
    assert s1.decisions[0].verdict == Verdict.BETTER and s1.decisions[0].rounds == 4  # separated at once (four a side first)
    close = FakeRunner(lambda c: (1000.0, 41.0 if c.flash_attn == "on" else 40.0), noise=0.05, seed=3)
    s2 = Search(close, _space(["flash_attn"], max_rounds=12))
    _start(s2, DEFAULTS)
    s2.run()
    d = s2.decisions[0]
    assert d.rounds > 4  # overlapping: more rounds ...
    assert d.rounds <= 12 and d.candidate.reps == d.rounds and d.incumbent.reps == d.rounds  # ... bounded


def test_the_comparison_is_interleaved_so_drift_hits_both_sides():
    # every repetition is 1% slower than the last (a machine getting busier): measured one after the
    # other, the second config would lose 10%; interleaved, the two equal configs tie
    runner = FakeRunner(lambda c: (1000.0, 50.0), noise=0.0, drift=lambda t: 0.99 ** t)
    search = Search(runner, _space([]))
    _start(search, DEFAULTS)
    search.consider(DEFAULTS.replace(n_batch=4096), {"n_batch": 4096}, "ubatch")
    assert search.decisions[-1].verdict == Verdict.TIE
    a, b = config_key(DEFAULTS), config_key(DEFAULTS.replace(n_batch=4096))
    # candidate first, B A A B B A A B: consecutive turns of one config are one measurement of two repetitions
    assert [k for k, _ in runner.calls[1:6]] == [b, a, b, a, b] and [n for _, n in runner.calls[1:6]] == [1, 2, 2, 2, 1]
    assert order(2, 4) == [0, 1, 1, 0, 0, 1, 1, 0]


def test_a_failed_candidate_keeps_the_incumbent_and_ends_the_ubatch_climb():
    runner = FakeRunner(lambda c: (1000.0 * c.n_ubatch / 512, 50.0), fails=lambda c: c.n_ubatch > 1024)
    search = Search(runner, _space(["ubatch"]))
    _start(search, DEFAULTS)
    search.run()
    assert search.incumbent.config.n_ubatch == 1024 and search.incumbent.config.n_batch >= 1024
    tried = [p.config.n_ubatch for p in runner.probes if p.role == ProbeRole.SEARCH]
    assert tried[:2] == [1024, 2048] and 4096 not in tried
    assert [d.verdict for d in search.decisions if d.dimension == "ubatch"][:2] == [Verdict.BETTER, Verdict.FAILED]


def test_the_walk_over_dimensions_converges_on_the_real_gains():
    def speed(c: RunConfig) -> tuple[float, float]:
        pp = 1000.0 * (2.0 if c.load_mode == "none" else 1.0) * (1.5 if c.n_ubatch >= 2048 else 1.0)
        return pp, 50.0 * (1.1 if c.n_threads == 8 else 1.0)

    runner = FakeRunner(speed, noise=0.02)
    search = Search(runner, _space(["load_mode", "ubatch", "threads", "flash_attn"]))
    _start(search, DEFAULTS.replace(n_threads=4, n_threads_batch=4))
    assert search.run() == "converged"
    c = search.incumbent.config
    assert c.load_mode == "none" and c.n_ubatch == 2048 and c.n_threads == 8 and c.flash_attn == "auto"
    assert changed_dimensions(DEFAULTS, c) == {"load_mode", "ubatch"}  # nothing that did not pay for itself
    assert all(d.candidate.reps >= 3 for d in search.decisions)


def test_the_order_of_dimensions_follows_the_workload():
    dims = ["placement", "threads", "ubatch", "flash_attn", "load_mode", "repack", "draft"]
    prompt_heavy = order_dimensions(dims, 0.8, experts_in_ram=True, gpu=True)
    assert prompt_heavy[:5] == ["load_mode", "repack", "ubatch", "placement", "threads"]
    decode = order_dimensions(dims, 0.1, experts_in_ram=True, gpu=True)
    assert decode[:2] == ["placement", "threads"]
    assert prompt_heavy[-1] == decode[-1] == "draft"
    assert order_dimensions(dims, 0.1, experts_in_ram=False, gpu=False)[0] == "threads"


def test_the_rule_on_made_up_figures():
    a = Side.of(0, "a", [10.0, 10.1, 9.9, 10.05])
    assert judge(a, Side.of(1, "b", [8.0, 8.1, 7.9, 8.05]), lower_is_better=True, last_round=False) == Verdict.BETTER
    assert judge(a, Side.of(1, "b", [8.0, 8.1, 7.9, 8.05]), lower_is_better=False, last_round=False) == Verdict.WORSE
    # one stalled repetition among nine is ignored; among four it widens the interval
    stalled = Side.of(1, "b", [8.0, 8.1, 7.9, 8.05, 8.0, 7.95, 8.1, 8.0, 30.0])
    assert stalled.high < 9 and Side.of(1, "b", [8.0, 8.1, 7.9, 30.0]).high == 30.0
    assert judge(a, stalled, lower_is_better=True, last_round=False) == Verdict.BETTER
    wide = Side.of(1, "b", [9.0, 10.5, 11.0])
    assert judge(a, wide, lower_is_better=True, last_round=False) is None  # overlapping: measure more
    assert judge(a, wide, lower_is_better=True, last_round=True) == Verdict.TIE
    # within 1% of each other, tight: a tie more rounds cannot break
    tight = Side.of(0, "a", [10.0, 10.01, 9.99])
    assert judge(tight, Side.of(1, "b", [10.02, 10.03, 10.01]), lower_is_better=True, last_round=False) == Verdict.TIE
    assert judge(a, Side.of(1, "b", []), lower_is_better=True, last_round=False) == Verdict.FAILED


def test_over_many_seeds_noise_rarely_decides_and_a_real_gain_usually_does():
    def verdicts(gain: float, noise: float) -> list[Verdict]:
        out = []
        for seed in range(60):
            r = FakeRunner(lambda c: (1000.0 * (gain if c.flash_attn == "on" else 1.0),
                                      50.0 * (gain if c.flash_attn == "on" else 1.0)), noise=noise, seed=seed)
            s = Search(r, _space([]))
            _start(s, DEFAULTS)
            s.consider(DEFAULTS.replace(flash_attn="on"), {"flash_attn": "on"}, "flash_attn")
            out.append(s.decisions[-1].verdict)
        return out

    same = verdicts(1.0, 0.03)
    assert sum(v != Verdict.TIE for v in same) <= 5  # ~5% in a 300-seed run, each by less than the noise
    assert verdicts(1.10, 0.02).count(Verdict.BETTER) >= 57


def test_every_dimension_is_named_in_words() -> None:
    from moetui.tuner.options import DIMENSION_WORDS, DIMENSIONS

    assert set(DIMENSION_WORDS) == set(DIMENSIONS) and all("_" not in w for w in DIMENSION_WORDS.values())


def test_a_slow_stretch_over_one_block_does_not_crown_an_equal_config():
    # a GPU rig: every switch reloads, so each turn is a block of three repetitions back to back; the
    # machine is 12% slower while the incumbent's first two blocks run (repetitions 7-12, after the plan's
    # 1-3 and the candidate's 4-6): six figures that, pooled, lie clear of the candidate's; taken per block,
    # they are two slow figures of three
    runner = FakeRunner(lambda c: (1000.0, 50.0), noise=0.005, drift=lambda t: 0.88 if 7 <= t <= 12 else 1.0,
                        cheap=False)
    search = Search(runner, _space([]))
    _start(search, DEFAULTS.replace(n_ubatch=1024))
    search.consider(DEFAULTS.replace(n_ubatch=2048), {"n_ubatch": 2048}, "ubatch")
    d = search.decisions[-1]
    assert d.verdict == Verdict.TIE and d.kept == "incumbent", d.describe()
    assert d.candidate.block == 3 and d.rounds == 3 and d.candidate.reps == 9 and "in 3 blocks" in d.describe()


def test_with_blocks_a_real_gain_still_wins():
    runner = FakeRunner(lambda c: (1000.0, 50.0 * (1.15 if c.n_ubatch == 2048 else 1.0)), noise=0.02, cheap=False)
    search = Search(runner, _space([]))
    _start(search, DEFAULTS)
    search.consider(DEFAULTS.replace(n_ubatch=2048), {"n_ubatch": 2048}, "ubatch")
    d = search.decisions[-1]
    assert d.verdict == Verdict.BETTER and d.kept == "candidate" and d.rounds == 3


def test_a_candidate_whose_incumbent_the_budget_cut_is_not_crowned():
    # seen on an H200 capped at 8 GiB: the candidate ran its block, then the budget ran out while the plan
    # reloaded; the candidate's lone figures were taken for a win over a config that was 12% faster
    class BudgetCut(FakeRunner):
        def turn(self, probe, reps, *, generate=False, record=True):
            if probe.label == "plan" and self.turns >= 3:  # the plan's second measurement: its reload is cut
                probe.status, probe.error_kind = ProbeStatus.SKIPPED, "budget"
                probe.error = "not measured: the tune's time budget ran out while it was loading or measuring"
                return False
            return super().turn(probe, reps, generate=generate, record=record)

    runner = BudgetCut(lambda c: (1000.0, 50.0 * (0.88 if c.n_ubatch == 2048 else 1.0)), cheap=False)
    search = Search(runner, _space([]))
    plan = _start(search, DEFAULTS.replace(n_ubatch=1024))
    plan.label = "plan"
    assert search.consider(DEFAULTS.replace(n_ubatch=2048), {"n_ubatch": 2048}, "ubatch") == "same"
    d = search.decisions[-1]
    assert d.verdict == Verdict.UNDECIDED and d.kept == "incumbent" and "budget ran out" in d.reason
    assert search.incumbent is plan
    cand = runner.probes[-1]
    assert cand.status == ProbeStatus.SKIPPED and cand.error_kind == "budget"  # not remembered as failed


class _CutAtPlansLastTurn(FakeRunner):
    """The budget runs out while the plan reloads for its last turn of a comparison (C, P P, C C, P): both
    have been measured side by side twice before the cut."""

    def turn(self, probe, reps, *, generate=False, record=True):
        if probe.label == "plan" and self.turns >= 15:
            probe.status, probe.error_kind = ProbeStatus.SKIPPED, "budget"
            probe.error = "not measured: the tune's time budget ran out while it was loading or measuring"
            return False
        return super().turn(probe, reps, generate=generate, record=record)


def test_a_clear_win_measured_side_by_side_stands_when_the_budget_cuts_the_incumbents_last_turn():
    # seen on an H200 at 12 GiB: one more layer's experts on the GPU measured 3.99 against 4.34 s/turn in
    # 3 and 2 blocks, and was thrown away because the plan's third block was cut
    runner = _CutAtPlansLastTurn(lambda c: (1000.0, 50.0 * (1.10 if c.n_ubatch == 2048 else 1.0)), noise=0.01,
                                 cheap=False)
    search = Search(runner, _space([]))
    plan = _start(search, DEFAULTS.replace(n_ubatch=1024))
    plan.label = "plan"
    assert search.consider(DEFAULTS.replace(n_ubatch=2048), {"n_ubatch": 2048}, "ubatch") == "better"
    d = search.decisions[-1]
    assert d.verdict == Verdict.BETTER and d.kept == "candidate", d.describe()
    assert d.incumbent.reps == 6 and d.candidate.reps == 9 and "side by side" in d.reason
    assert search.incumbent.config.n_ubatch == 2048


def test_a_cut_comparison_inside_the_noise_keeps_the_incumbent():
    runner = _CutAtPlansLastTurn(lambda c: (1000.0, 50.0), noise=0.03, cheap=False)
    search = Search(runner, _space([]))
    plan = _start(search, DEFAULTS.replace(n_ubatch=1024))
    plan.label = "plan"
    search.consider(DEFAULTS.replace(n_ubatch=2048), {"n_ubatch": 2048}, "ubatch")
    d = search.decisions[-1]
    assert d.kept == "incumbent" and d.verdict == Verdict.UNDECIDED, d.describe()
    assert search.incumbent is plan
