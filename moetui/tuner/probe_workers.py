"""The probe runner's model workers: the one loaded now, the spare kept aside, and the benches they run.

A config that changes only context-level settings reuses the loaded model; with RAM to spare on a CPU rig
one other loaded worker is kept aside, so two configs compared turn by turn do not reload at every turn.
A draft config is timed by greedy generation of a fixed prompt (a bench's random tokens defeat any draft).
ProbeRunner (runner.py) builds on this with the clock and the probe life-cycle.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moetui.config import RunConfig
from moetui.errors import WorkerError
from moetui.hardware.rig import Rig
from moetui.runtime.bench import BenchResult
from moetui.runtime.client import ModelWorker, collect
from moetui.runtime.stats import process_vram_bytes
from moetui.tuner.options import TuneOptions

# settings a live context can change without reloading the weights
CONTEXT_KEYS = ("n_ctx", "n_batch", "n_ubatch", "flash_attn", "cache_type_k", "cache_type_v")
THREAD_KEYS = ("n_threads", "n_threads_batch")
STALL_S = 300.0
SPARE_RAM_FRACTION = 0.5  # a second worker stays loaded while two copies of the model fit in this much RAM
DRAFT_PROMPT = ("Write a numbered list of the planets of the solar system with one short sentence "
                "about each, then repeat the list in reverse order.")


def load_key(cfg: RunConfig) -> tuple[Any, ...]:
    """What needs a reload to change: everything but the context-level settings and threads."""
    d = cfg.to_dict()
    for k in (*CONTEXT_KEYS, *THREAD_KEYS, "notes", "seed"):
        d.pop(k, None)
    return (json.dumps(d, sort_keys=True),)


@dataclass
class LoadedModel:
    key: tuple[Any, ...]
    config: RunConfig
    default_threads: tuple[int, int]


class ProbeWorkers:
    """The worker half of ProbeRunner; the attributes below are set by ProbeRunner.__init__."""

    model_path: str
    rig: Rig
    options: TuneOptions
    keep_spares: bool
    default_threads: tuple[int, int] | None
    cancel: threading.Event
    interrupted: bool
    _worker: Any
    _loaded: LoadedModel | None
    _spare: tuple[Any, LoadedModel] | None

    if TYPE_CHECKING:  # ProbeRunner's clock
        def check_cancel(self) -> None: ...
        def hard_left(self) -> float: ...

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
        self._loaded = LoadedModel(lkey, cfg, (info.n_threads, info.n_threads_batch))
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
