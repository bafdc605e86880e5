"""The probe runner: model workers, benchmarks, the clock, and the one life-cycle every probe goes through.

    probe = runner.new_probe(config, changes, role)
    if runner.open(probe):           # skipped when it failed before on this rig; ProbeStarted
        runner.turn(probe, reps)     # load (or reconfigure the loaded model), bench, add the figures; any number
    runner.close(probe)              # ok or failed, its score; ProbeFinished

A turn that fails (OOM, crash, hang) marks the probe failed, closes the worker (its state is unknown) and, for
failures that say something about the config, records it in the ProfileStore so it is never proposed again.
A config that changes only context-level settings reuses the loaded model; with RAM to spare on a CPU rig
one other loaded worker is kept aside, so two configs compared turn by turn do not reload at every turn.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moetui.config import RunConfig
# Cancelled: the user cancelled; every layer unwinds to the engine, which keeps the best so far
from moetui.errors import (
    Cancelled, ConfigError, DraftMismatch, ErrorKind, ModelFileError, WorkerError, classify_failure,
)
from moetui.hardware.rig import Rig
from moetui.runtime.bench import BenchResult
from moetui.tuner.events import ProbeFinished, ProbeStarted, TuneEvent
from moetui.tuner.headroom import HEADROOM_SLACK, predicted_vram
from moetui.tuner.options import TuneOptions
from moetui.tuner.probe import Probe, ProbeRole, ProbeStatus, short_label
from moetui.tuner.scoring import Objective
from moetui.tuner.store import ProfileStore, config_key
from moetui.runtime.client import ModelWorker
from moetui.runtime.client import collect
from moetui.config.units import gib_fixed
from moetui.runtime.stats import process_vram_bytes

# settings a live context can change without reloading the weights
CONTEXT_KEYS = ("n_ctx", "n_batch", "n_ubatch", "flash_attn", "cache_type_k", "cache_type_v")
THREAD_KEYS = ("n_threads", "n_threads_batch")
# failures that say something about the config on this rig (not about the moment or the user's options);
# a hang is not among them: on a busy machine a slow probe can look like one
RECORDED_KINDS = (ErrorKind.OOM, ErrorKind.CRASH, ErrorKind.ERROR, ErrorKind.LOAD, ErrorKind.CONFIG,
                  ErrorKind.CONTEXT)
STALL_S = 300.0
SPARE_RAM_FRACTION = 0.5  # a second worker stays loaded while two copies of the model fit in this much RAM
DRAFT_PROMPT = ("Write a numbered list of the planets of the solar system with one short sentence "
                "about each, then repeat the list in reverse order.")
PROBE_ERRORS = (WorkerError, ModelFileError, ConfigError, DraftMismatch)


# a request may run this share of the budget past it (what the final comparison may take), no more
HARD_LIMIT_SHARE = 0.25


def _kind(exc: BaseException) -> str:
    """What kind of failure ended a probe: the one classifier of worker failures (moetui.errors)."""
    return str(classify_failure(exc))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_key(cfg: RunConfig) -> tuple[Any, ...]:
    """What needs a reload to change: everything but the context-level settings and threads."""
    d = cfg.to_dict()
    for k in (*CONTEXT_KEYS, *THREAD_KEYS, "notes", "seed"):
        d.pop(k, None)
    return (json.dumps(d, sort_keys=True),)


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    config: RunConfig
    default_threads: tuple[int, int]


class ProbeRunner:
    def __init__(self, model_path: str, rig: Rig, options: TuneOptions, objective: Objective, store: ProfileStore,
                 rig_fingerprint: str, model_id: str) -> None:
        self.model_path, self.rig, self.options, self.objective = model_path, rig, options, objective
        self.store, self.rig_fingerprint, self.model_id = store, rig_fingerprint, model_id
        self.probes: list[Probe] = []
        self.best: Probe | None = None  # the search's incumbent, reported with every finished probe
        self.keep_spares = False
        self.vram_limit: int | None = None  # bytes a probe may use (None: no check)
        # bytes of routed-expert weights a config keeps in RAM (the engine knows the model): with it, a probe
        # that only moves experts is judged against the headroom before it loads (predicted_vram)
        self.experts_in_ram_bytes: Callable[[RunConfig], int | None] | None = None
        self.default_threads: tuple[int, int] | None = None  # what a config without thread counts gets
        self._by_key: dict[str, Probe] = {}
        self._worker: Any = None
        self._loaded: _Loaded | None = None
        self._spare: tuple[Any, _Loaded] | None = None
        self._t0 = time.monotonic()
        self._on_event: Callable[[TuneEvent], None] | None = None
        self.cancel = threading.Event()
        self.interrupted = False  # Ctrl-C: workers are killed, not asked to finish

    # --- the clock --------------------------------------------------------------------------------------
    def start_clock(self, on_event: Callable[[TuneEvent], None] | None, cancel: threading.Event | None) -> None:
        self._on_event, self.cancel, self._t0 = on_event, cancel or threading.Event(), time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def hard_left(self) -> float:
        """Seconds a request may still take: --budget is a hard limit (the final comparison's share
        included); a probe still running then is killed as a hang (a hang is not recorded as a failed config)."""
        return max(1.0, self.options.budget_s * (1 + HARD_LIMIT_SHARE) - self.elapsed())

    def budget_spent(self) -> bool:
        """The hard limit (--budget plus the final comparison's share) is reached, within a second."""
        return self.options.budget_s * (1 + HARD_LIMIT_SHARE) - self.elapsed() <= 1.5

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def n_done(self) -> int:
        return sum(1 for p in self.probes if p.status in (ProbeStatus.OK, ProbeStatus.FAILED))

    def n_measured(self) -> int:
        return sum(1 for p in self.probes if p.status in (ProbeStatus.OK, ProbeStatus.FAILED, ProbeStatus.RUNNING))

    def out_of_budget(self) -> bool:
        self.check_cancel()
        o = self.options
        if o.max_probes is not None and self.n_measured() >= o.max_probes:
            return True
        return self.elapsed() >= o.budget_s

    def fraction(self) -> float:
        f = self.elapsed() / self.options.budget_s
        if self.options.max_probes:
            f = max(f, self.n_measured() / self.options.max_probes)
        return min(1.0, f)

    def eta(self) -> float | None:
        """Time left: the budget's remainder (the search usually converges earlier)."""
        left = self.options.budget_s - self.elapsed()
        if self.options.max_probes:
            done = [p.seconds for p in self.probes if p.seconds]
            if done:
                left = min(left, sum(done) / len(done) * max(0, self.options.max_probes - self.n_measured()))
        return max(0.0, left)

    def emit(self, ev: TuneEvent) -> None:
        if self._on_event is not None:
            self._on_event(ev)

    def watch_cancel(self, done: threading.Event) -> None:
        """(a thread) On cancel, stop the bench in flight after its current repetition."""
        while not done.is_set():
            if self.cancel.wait(0.2):
                w = self._worker
                if w is not None:
                    w.stop()
                return

    # --- the probe life-cycle ---------------------------------------------------------------------------
    def key(self, cfg: RunConfig) -> str:
        return config_key(self.effective(cfg))

    def known(self, cfg: RunConfig) -> Probe | None:
        return self._by_key.get(self.key(cfg))

    def new_probe(self, config: RunConfig, changes: dict[str, Any], role: ProbeRole = ProbeRole.SEARCH,
                  label: str | None = None) -> Probe:
        probe = Probe(len(self.probes), config, dict(changes), label or short_label(changes), role=role)
        self.probes.append(probe)
        if role != ProbeRole.FINAL:
            self._by_key.setdefault(self.key(config), probe)
        return probe

    def open(self, probe: Probe) -> bool:
        """Start a probe; False (and finished, skipped) when it failed before on this rig and model."""
        if self.store.is_failed(self.rig_fingerprint, self.model_id, probe.config):
            probe.status, probe.error_kind = ProbeStatus.SKIPPED, ErrorKind.FAILED_BEFORE.value
            probe.error = "failed before on this rig and model; not tried again"
            self.emit(ProbeStarted(probe, self.n_done(), self.eta()))
            self.emit(ProbeFinished(probe, self.best, self.n_done(), self.eta(), self.elapsed()))
            return False
        predicted = self.predicted_vram(probe.config)
        if predicted is not None and self.vram_limit is not None and predicted > self.vram_limit + HEADROOM_SLACK:
            probe.status, probe.error_kind = ProbeStatus.SKIPPED, ErrorKind.HEADROOM.value
            probe.vram_bytes = predicted
            probe.error = (f"predicted to use {gib_fixed(predicted)} of VRAM (a measured config plus the experts "
                           f"it moves), over the {self.vram_limit / 2**30:.2f} GiB left after the margin: not loaded")
            self.emit(ProbeStarted(probe, self.n_done(), self.eta()))
            self.emit(ProbeFinished(probe, self.best, self.n_done(), self.eta(), self.elapsed()))
            return False
        self.check_cancel()
        probe.status, probe.seconds = ProbeStatus.RUNNING, 0.0
        self.emit(ProbeStarted(probe, self.n_done(), self.eta()))
        return True

    def predicted_vram(self, cfg: RunConfig) -> int | None:
        if self.experts_in_ram_bytes is None:
            return None
        return predicted_vram(self.probes, cfg, self.experts_in_ram_bytes)

    def turn(self, probe: Probe, reps: int, *, generate: bool = False, record: bool = True) -> bool:
        """Measure `reps` more repetitions of a running probe into its bench. False when it failed (then it
        is marked so and, when `record`, remembered as failed for this rig). Raises Cancelled."""
        if probe.status != ProbeStatus.RUNNING:
            return False
        t0 = time.monotonic()
        try:
            if self.ensure_loaded(probe.config):
                probe.reloaded = True
                info = self._worker.load_info
                probe.load_s = (probe.load_s or 0.0) + (info.load_s if info and info.load_s else 0.0)
            elif probe.bench is None:
                probe.reloaded = False
            self.check_cancel()
            t, tb = self.threads(probe.config)
            more = self._generate_bench(t, tb, reps) if generate or probe.config.draft else self._bench(t, tb, reps)
            if probe.bench is None:
                probe.bench = more
            else:
                probe.bench.pp_tok_s += more.pp_tok_s
                probe.bench.tg_tok_s += more.tg_tok_s
                probe.bench.reps += more.reps
            probe.vram_bytes = max(probe.vram_bytes or 0, self._vram() or 0) or None
            self._check_headroom(probe)
        except PROBE_ERRORS as exc:
            self.close_worker()
            self.check_cancel()  # a failure caused by the cancel is the cancel
            probe.status, probe.error_kind, probe.error = ProbeStatus.FAILED, _kind(exc), _first_line(exc)
            if probe.error_kind == ErrorKind.HANG and self.budget_spent():
                # the request's time limit was what was left of --budget: the config did not hang, the
                # tune ran out of time with it (seen on an H200: "no progress for 2 s" while loading)
                probe.status, probe.error_kind = ProbeStatus.SKIPPED, ErrorKind.BUDGET.value
                probe.error = "not measured: the tune's time budget ran out while it was loading or measuring"
            if record and probe.error_kind in RECORDED_KINDS:
                self.store.record_failure(self.rig_fingerprint, self.model_id, probe.config, probe.error_kind,
                                          probe.error)
        finally:
            probe.seconds = (probe.seconds or 0.0) + time.monotonic() - t0
        return probe.status == ProbeStatus.RUNNING

    def close(self, probe: Probe, announce: bool = True) -> None:
        """Finish a probe: ok with its score and seconds per turn, or as it failed; ProbeFinished (now,
        or by announce() once the caller knows the best)."""
        if probe.status == ProbeStatus.RUNNING:
            if probe.bench is not None and probe.bench.tg_tok_s and probe.bench.pp_tok_s:
                probe.status = ProbeStatus.OK
                probe.score = self.objective.score(probe.bench)
                probe.turn_s = self.objective.turn_seconds(probe.bench)
            else:
                probe.status, probe.error_kind = ProbeStatus.FAILED, ErrorKind.PROTOCOL.value
                probe.error = "the measurement returned no figures"
        if announce:
            self.announce(probe)

    def announce(self, probe: Probe) -> None:
        self.emit(ProbeFinished(probe, self.best, self.n_done(), self.eta(), self.elapsed()))

    def measure(self, config: RunConfig, changes: dict[str, Any], role: ProbeRole = ProbeRole.SEARCH,
                label: str | None = None) -> Probe:
        """One config on its own (options.reps repetitions), or the probe that already measured it."""
        seen = self.known(config)
        if seen is not None:
            return seen
        probe = self.new_probe(config, changes, role, label)
        if self.open(probe):
            self.turn(probe, self.options.reps)
            self.close(probe)
        return probe

    def abandon_running(self) -> None:
        """After a cancel: every started probe still running gets its finished event, as skipped."""
        for p in self.probes:
            if p.status == ProbeStatus.RUNNING:
                p.status, p.error, p.error_kind = ProbeStatus.SKIPPED, "cancelled", ErrorKind.CANCELLED.value
                self.emit(ProbeFinished(p, self.best, self.n_done(), self.eta(), self.elapsed()))

    # --- workers ----------------------------------------------------------------------------------------
    def cheap_switch(self, a: RunConfig, b: RunConfig) -> bool:
        """Can the measurement go back and forth between two configs without a reload at every turn?"""
        return load_key(a) == load_key(b) or self.keep_spares

    def ensure_loaded(self, cfg: RunConfig) -> bool:
        """Make the current worker run `cfg`: change context-level settings on the loaded model, take the
        spare worker that has its weights loaded, or load them. True when it loaded the model."""
        lkey = load_key(cfg)
        if self._loaded is not None and self._loaded.key == lkey and self._worker is not None and self._worker.alive:
            ctx = {k: getattr(cfg, k) for k in CONTEXT_KEYS if getattr(cfg, k) != getattr(self._loaded.config, k)}
            if ctx:
                self._worker.reconfigure(**ctx)
            self._loaded.config = cfg
            return False
        spare, self._spare = self._spare, None
        if self.keep_spares and self._worker is not None and self._loaded is not None and self._worker.alive:
            self._spare, self._worker, self._loaded = (self._worker, self._loaded), None, None
        else:
            self.close_worker()
        if spare is not None and spare[1].key == lkey and spare[0].alive:
            self._worker, self._loaded = spare
            return self.ensure_loaded(cfg)  # its context may differ
        if spare is not None:
            self._end(spare[0])
        self.check_cancel()
        # no progress (a loaded tensor, a measured repetition, a token) for this long means a hang; slow is fine
        timeout = max(STALL_S, self.options.budget_s)
        self._worker = ModelWorker(stall_timeout=timeout, load_timeout=min(timeout, self.hard_left()))
        info = self._worker.start(cfg)
        self._loaded = _Loaded(lkey, cfg, (info.n_threads, info.n_threads_batch))
        self.default_threads = self.default_threads or self._loaded.default_threads
        return True

    def spares_fit(self, n: int) -> bool:
        """Can n copies of the model stay loaded at once? Only on a CPU rig (VRAM holds one) with RAM to
        spare: a config without mmap holds its own copy of the weights."""
        if self.rig.gpus and self.rig.build.gpu_offload:
            return False
        return self.model_bytes() * n <= SPARE_RAM_FRACTION * (self.rig.memory.available_bytes or 0)

    def model_bytes(self) -> int:
        try:
            return os.path.getsize(self.model_path)
        except OSError:
            return 0

    def threads(self, cfg: RunConfig) -> tuple[int, int]:
        """The thread counts a config runs with (its own, else what the loaded model defaulted to)."""
        dt = self._loaded.default_threads if self._loaded else (self.default_threads or (1, 1))
        return cfg.n_threads or dt[0], cfg.n_threads_batch or cfg.n_threads or dt[1]

    def effective(self, cfg: RunConfig) -> RunConfig:
        """The config with the thread counts it actually runs with, so "default threads" and the same
        counts written out are one candidate, not two."""
        if self.default_threads is None or (cfg.n_threads and cfg.n_threads_batch):
            return cfg
        t = cfg.n_threads or self.default_threads[0]
        return cfg.replace(n_threads=t, n_threads_batch=cfg.n_threads_batch or cfg.n_threads or self.default_threads[1])

    def _bench(self, t: int, tb: int, reps: int) -> BenchResult:
        o = self.options
        b = self._worker.bench(o.n_prompt, o.n_gen, max(1, reps), n_threads=t, n_threads_batch=tb,
                               timeout=self.hard_left())
        self.check_cancel()
        if not b.tg_tok_s or not b.pp_tok_s:
            raise WorkerError("the measurement returned no figures", kind="protocol")
        return b

    def _generate_bench(self, t: int, tb: int, reps: int) -> BenchResult:
        """Speed timed by greedy generation of a fixed prompt: how a draft model is judged (bench() times
        random tokens, which no draft can predict)."""
        o = self.options
        pp, tg = [], []
        for _ in range(max(1, reps)):
            self.check_cancel()
            done = collect(self._worker.generate(DRAFT_PROMPT, max_tokens=o.n_gen, temperature=0.0,
                                                 n_threads=t, n_threads_batch=tb, timeout=self.hard_left()))
            if done.stats.prompt_tok_s:
                pp.append(done.stats.prompt_tok_s)
            if done.stats.decode_tok_s_avg:
                tg.append(done.stats.decode_tok_s_avg)
        c = self._loaded.config if self._loaded else RunConfig(model_path=self.model_path)
        return BenchResult(n_prompt=o.n_prompt or 0, n_gen=o.n_gen, reps=len(tg), pp_tok_s=pp, tg_tok_s=tg,
                           n_threads=t, n_threads_batch=tb, n_batch=c.n_batch, n_ubatch=c.n_ubatch,
                           flash_attn=c.flash_attn, cache_type_k=c.cache_type_k, cache_type_v=c.cache_type_v)

    def _vram(self) -> int | None:
        w = self._worker
        if w is None or w.load_info is None or not self.rig.gpus:
            return None
        v = process_vram_bytes(w.load_info.pid)
        if v is None:
            v = sum(n for d, n in w.load_info.buffers.total_by_device().items() if d != "CPU") or None
        return v

    def _check_headroom(self, probe: Probe) -> None:
        """The user's VRAM margin is a constraint: a config that runs but leaves less free is not kept
        (not recorded as failed either: a smaller margin would allow it)."""
        if probe.vram_bytes is None or self.vram_limit is None or probe.vram_bytes <= self.vram_limit:
            return
        probe.status, probe.error_kind = ProbeStatus.FAILED, ErrorKind.HEADROOM.value
        probe.error = (f"uses {probe.vram_bytes / 2**30:.2f} GiB of VRAM, over the "
                       f"{self.vram_limit / 2**30:.2f} GiB left after the margin")

    def _end(self, w: Any) -> None:
        w.kill() if (self.interrupted or self.cancel.is_set()) else w.close()

    def close_worker(self) -> None:
        w, self._worker, self._loaded = self._worker, None, None
        if w is not None:
            self._end(w)

    def close_all(self) -> None:
        self.close_worker()
        spare, self._spare = self._spare, None
        if spare is not None:
            self._end(spare[0])
