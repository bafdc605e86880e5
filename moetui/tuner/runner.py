"""The probe runner: model workers, benchmarks, the clock, and the one life-cycle every probe goes through.

    probe = runner.new_probe(config, changes, role)
    if runner.open(probe):           # skipped when it failed before on this rig; ProbeStarted
        runner.turn(probe, reps)     # load (or reconfigure the loaded model), bench, add the figures; any number
    runner.close(probe)              # ok or failed, its score; ProbeFinished

A turn that fails (OOM, crash, hang) marks the probe failed, closes the worker (its state is unknown) and, for
failures that say something about the config, records it in the ProfileStore so it is never proposed again.
Keeping the model workers (reuse, the spare, the benches they run) is ProbeWorkers' part (probe_workers.py).
"""

from __future__ import annotations

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
from moetui.tuner.events import ProbeFinished, ProbeStarted, TuneEvent
from moetui.tuner.headroom import HEADROOM_SLACK, predicted_vram
from moetui.tuner.options import TuneOptions
from moetui.tuner.probe import Probe, ProbeRole, ProbeStatus, short_label
from moetui.tuner.scoring import Objective
from moetui.tuner.store import ProfileStore, config_key
from moetui.config.units import gib_fixed
from moetui.tuner.probe_workers import LoadedModel, ProbeWorkers, load_key  # noqa: F401 - load_key: tests use it here

# failures that say something about the config on this rig (not about the moment or the user's options);
# a hang is not among them: on a busy machine a slow probe can look like one
RECORDED_KINDS = (ErrorKind.OOM, ErrorKind.CRASH, ErrorKind.ERROR, ErrorKind.LOAD, ErrorKind.CONFIG,
                  ErrorKind.CONTEXT)
PROBE_ERRORS = (WorkerError, ModelFileError, ConfigError, DraftMismatch)


# a request may run this share of the budget past it (what the final comparison may take), no more
HARD_LIMIT_SHARE = 0.25


def _kind(exc: BaseException) -> str:
    """What kind of failure ended a probe: the one classifier of worker failures (moetui.errors)."""
    return str(classify_failure(exc))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class ProbeRunner(ProbeWorkers):
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
        self._loaded: LoadedModel | None = None
        self._spare: tuple[Any, LoadedModel] | None = None
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

    def _check_headroom(self, probe: Probe) -> None:
        """The user's VRAM margin is a constraint: a config that runs but leaves less free is not kept
        (not recorded as failed either: a smaller margin would allow it)."""
        if probe.vram_bytes is None or self.vram_limit is None or probe.vram_bytes <= self.vram_limit:
            return
        probe.status, probe.error_kind = ProbeStatus.FAILED, ErrorKind.HEADROOM.value
        probe.error = (f"uses {probe.vram_bytes / 2**30:.2f} GiB of VRAM, over the "
                       f"{self.vram_limit / 2**30:.2f} GiB left after the margin")

    def abandon_running(self) -> None:
        """After a cancel: every started probe still running gets its finished event, as skipped."""
        for p in self.probes:
            if p.status == ProbeStatus.RUNNING:
                p.status, p.error, p.error_kind = ProbeStatus.SKIPPED, "cancelled", ErrorKind.CANCELLED.value
                self.emit(ProbeFinished(p, self.best, self.n_done(), self.eta(), self.elapsed()))
