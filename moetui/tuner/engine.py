"""The auto-tuner: measure the sizing core's plan, then improve it one dimension at a time (coordinate
descent seeded by the plan), comparing candidates by the median of repeated runs and their spread.

Order of work:
  1. the plan, measured; llama.cpp-like defaults, measured the same way (when they fit and differ);
  2. rounds over the dimensions that apply -- placement (walk the experts-in-RAM axis from the plan's
     position in both directions, then split the boundary layer part by part), threads, ubatch, flash
     attention, KV type, load mode, draft -- each keeping a candidate only when it beats the best beyond
     the noise; a round that improves nothing ends the search ("converged");
  3. the time budget (checked before each probe) or max_probes ends it early ("budget");
  4. the final round (final.py): the winner, the start it must beat (defaults, else the plan) and an
     overlapping runner-up measured again in interleaved turns; the highest median wins. So the tune never
     hands back a config that, measured side by side, is slower than where it started.

A candidate that changes only context-level settings (threads, batch sizes, flash attention, KV type)
reuses the loaded model (ModelWorker.reconfigure / bench threads); others reload. A failed probe (OOM,
crash, hang) is recorded in the ProfileStore and never proposed again for this rig and model.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from moetui.config import DraftConfig, RunConfig
from moetui.errors import (
    ConfigError,
    DoesNotFit,
    DraftMismatch,
    ModelFileError,
    MoetuiError,
    WorkerError,
)
from moetui.hardware.rig import Rig
from moetui.model.info import ModelInfo
from moetui.runtime.bench import BenchResult
from moetui.tuner import final, scoring
from moetui.tuner.events import (
    ProbeFinished,
    ProbeStarted,
    TuneEvent,
    TuneFinished,
    TuneProgress,
)
from moetui.tuner.options import DIMENSIONS, MIN_REPS, TuneOptions
from moetui.tuner.placement_axis import (
    BETTER,
    FAILED,
    SAME,
    STOP,
    WORSE,
    PlacementAxis,
    walk,
)
from moetui.tuner.probe import Probe, short_label
from moetui.tuner.result import TuneResult
from moetui.tuner.store import ProfileStore, config_key

# settings a live context can change without reloading the weights
CONTEXT_KEYS = ("n_ctx", "n_batch", "n_ubatch", "flash_attn", "cache_type_k", "cache_type_v")
THREAD_KEYS = ("n_threads", "n_threads_batch")
UBATCHES = (128, 256, 512, 1024, 2048, 4096)
GPU_SPLIT_MIN_PROMPT = 2048
DEFAULT_N_PROMPT = TuneOptions.n_prompt
MAX_ROUNDS = 3
MAX_EXTRA_REPS = 2  # extra measurement rounds while the spread is large
NOISY = 0.05  # relative spread of the objective above which a probe is measured again
# failures that say something about the config on this rig (not about the moment or the user's options);
# a hang is not among them: on a busy machine a slow probe can look like one
RECORDED_KINDS = ("oom", "crash", "error", "abort", "load", "config", "context")
STALL_S = 300.0
FINAL_BUDGET_SHARE = 0.25  # the final round may run this share of the budget past it, no more
SPARE_RAM_FRACTION = 0.5  # the final round keeps one worker per contender loaded while they fit in this much RAM
MLOCK_RAM_HEADROOM = 1.25  # mlock is tried only when RAM holds the model this many times over
DRAFT_PROMPT = ("Write a numbered list of the planets of the solar system with one short sentence "
                "about each, then repeat the list in reverse order.")


# which dimensions' best value may move when another's changes (memory, compute or thread contention)
INTERACTS: dict[str, set[str]] = {
    "placement": {"ubatch", "cache_type", "flash_attn", "load_mode"},
    "threads": {"placement", "load_mode", "ubatch"},
    "ubatch": {"placement", "threads", "flash_attn", "cache_type"},
    "flash_attn": {"cache_type", "ubatch", "placement"},
    "cache_type": {"flash_attn", "placement"},
    "load_mode": {"placement"},
}


def config_changes(a: RunConfig, b: RunConfig) -> dict[str, Any]:
    """`b`'s settings that differ from `a`'s, in a probe's `changes` vocabulary."""
    out: dict[str, Any] = {}
    for k in ("n_gpu_layers", "n_threads", "n_threads_batch", "n_ubatch", "n_batch", "flash_attn", "load_mode"):
        if getattr(a, k) != getattr(b, k):
            out[k] = getattr(b, k)
    if (a.cache_type_k, a.cache_type_v) != (b.cache_type_k, b.cache_type_v):
        out["cache_type"] = b.cache_type_k if b.cache_type_k == b.cache_type_v else f"{b.cache_type_k}/{b.cache_type_v}"
    if a.overrides != b.overrides:
        out["overrides"] = len(b.overrides)
    return out


def changed_dimensions(a: RunConfig, b: RunConfig) -> set[str]:
    """The tuning dimensions in which two configs differ."""
    out = set()
    if a.overrides != b.overrides or a.n_gpu_layers != b.n_gpu_layers:
        out.add("placement")
    if (a.n_threads, a.n_threads_batch) != (b.n_threads, b.n_threads_batch):
        out.add("threads")
    if (a.n_ubatch, a.n_batch) != (b.n_ubatch, b.n_batch):
        out.add("ubatch")
    if a.flash_attn != b.flash_attn:
        out.add("flash_attn")
    if (a.cache_type_k, a.cache_type_v) != (b.cache_type_k, b.cache_type_v):
        out.add("cache_type")
    if a.load_mode != b.load_mode:
        out.add("load_mode")
    if a.draft != b.draft:
        out.add("draft")
    return out


class TuneFailed(MoetuiError):
    """No candidate configuration could be measured."""


class _Cancelled(Exception):
    pass


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    config: RunConfig
    default_threads: tuple[int, int]


class Tuner:
    def __init__(self, model_path: str, rig: Rig, options: TuneOptions | None = None, *,
                 model_info: ModelInfo | None = None, store: ProfileStore | None = None) -> None:
        from moetui.model.inspect import inspect_file

        self.model_path = str(model_path)
        self.rig = rig
        self.options = dataclasses.replace(options) if options else TuneOptions()  # a copy: the tune may adjust it
        self.options.validate()
        self.info = model_info or inspect_file(self.model_path)
        self.store = store or ProfileStore()
        self.rig_fingerprint = rig.fingerprint or _fingerprint(rig)
        self.model_id = self.info.identity
        self.llama_version = llama_version(rig)
        self.probes: list[Probe] = []
        self._by_key: dict[str, Probe] = {}
        self._worker: Any = None
        self._loaded: _Loaded | None = None
        # loaded workers set aside while another runs (the final round only; CPU rigs with RAM to spare)
        self._spares: dict[tuple[Any, ...], tuple[Any, _Loaded]] = {}
        self._keep_spares = False
        self._final_skipped: str | None = None
        self._best: Probe | None = None
        self._t0 = 0.0
        self._on_event: Callable[[TuneEvent], None] | None = None
        self._cancel: threading.Event | None = None
        self._interrupted = False  # Ctrl-C: the worker is killed, not asked to finish
        self._default_threads: tuple[int, int] | None = None  # what a config without thread counts gets
        self.plan: Any = None

    # --- public -----------------------------------------------------------------------------------------
    def run(self, on_event: Callable[[TuneEvent], None] | None = None,
            cancel: threading.Event | None = None) -> TuneResult:
        self._on_event, self._cancel = on_event, cancel or threading.Event()
        self._t0 = time.monotonic()
        stopped = "converged"
        done = threading.Event()
        watcher = threading.Thread(target=self._watch_cancel, args=(done,), daemon=True, name="moetui-tune-cancel")
        watcher.start()
        plan_probe = baseline = None
        try:
            start = self._start_config()
            plan_probe = self.measure(start, {}, role="plan")
            plan_probe.predicted_decode_tps = self.plan.decode_tps
            plan_probe.predicted_prompt_tps = self.plan.prompt_tps
            baseline = self._baseline(start)
            stopped = self._search(start)
            start_probe = baseline if baseline is not None and baseline.ok else plan_probe
            again = self._final_round(start_probe)
            if again is not None and start_probe is baseline:
                baseline = again  # the winner and the defaults as measured side by side: like with like
        except _Cancelled:
            stopped = "cancelled"
        except KeyboardInterrupt:
            self._interrupted = True
            stopped = "cancelled"
        finally:
            self._close_worker()
            self._close_spares()
            done.set()  # ends the watcher
            for p in self.probes:
                if p.status == "running":  # interrupted mid-measurement
                    p.status, p.error, p.error_kind = "skipped", "cancelled", "cancelled"
        if self._best is None:
            raise self._nothing_worked()
        result = TuneResult(
            best=self._best, baseline=baseline, plan_probe=plan_probe,
            predicted={"decode_tps": self.plan.decode_tps, "prompt_tps": self.plan.prompt_tps},
            probes=list(self.probes), rig_fingerprint=self.rig_fingerprint, model_id=self.model_id,
            llama_version=self.llama_version, objective=self.options.objective, elapsed_s=self._elapsed(),
            stopped=stopped, model_path=self.model_path, efficiency=self._refit(plan_probe), created=time.time(),
            notes=self._notes(), n_ctx_requested=self.options.n_ctx, vram_margin_bytes=self.vram_margin(),
        )
        self.store.put(result)
        self._emit(TuneFinished(result))
        return result

    def _final_round(self, start: Probe | None) -> Probe | None:
        """Measure the winner again side by side with the start (llama.cpp's defaults, else the plan) and
        the runner-up whose spread overlaps it, in interleaved turns, and keep the highest median
        (final.py says why). Returns the start's final probe when it took part. Runs past the time budget
        (a few seconds; the answer matters more) but within max_probes: each contender is one probe."""
        best = self._best
        if best is None or not best.ok or best.role not in final.COMPARABLE_ROLES or best.config.draft is not None:
            return None  # a draft won: it was timed by generation, against a reference timed the same way
        if self._cancel is not None and self._cancel.is_set():
            return None
        who = final.contenders(best, start, self.probes, self._not_worse, self._probe_key)
        o = self.options
        rounds = max(MIN_REPS, o.reps)
        rounds += rounds % 2  # whole mirrored pairs: a linear drift cancels
        keep = self._spares_fit(len(who))
        allowed = FINAL_BUDGET_SHARE * o.budget_s
        if len(who) > 2 and self._final_cost(who, rounds, keep) > allowed:
            who = who[:2]  # the winner and the start: the one comparison the answer must survive
        if len(who) < 2 or (o.max_probes is not None and self._n_measured() + len(who) > o.max_probes):
            return None
        cost = self._final_cost(who, rounds, keep)
        if cost > allowed:  # e.g. a large model on a GPU rig that reloads at every turn
            self._final_skipped = f"the final side-by-side round was skipped: it would take ~{cost:.0f} s"
            return None
        self._emit(TuneProgress(self._fraction(), self._elapsed(), self._eta(),
                                "final: " + " vs ".join(p.label for p in who) + ", measured side by side"))
        finals = [Probe(len(self.probes) + i, p.config, dict(p.changes), f"{p.label} (final)", role="final")
                  for i, p in enumerate(who)]
        pp: list[list[float]] = [[] for _ in finals]
        tg: list[list[float]] = [[] for _ in finals]
        for p in finals:
            self.probes.append(p)
            p.status, p.seconds, p.reloaded = "running", 0.0, False
            self._emit(ProbeStarted(p, self._n_done(), self._eta()))
        # with one worker per contender kept loaded, a turn costs a measurement, not a reload
        self._keep_spares = keep
        try:
            for i in final.order(len(finals), rounds):
                p = finals[i]
                if p.status != "running":
                    continue  # it failed in an earlier turn
                self._check_cancel()
                t0 = time.monotonic()
                try:
                    p.reloaded = self._ensure_loaded(p.config) or p.reloaded
                    t, tb = self._threads(p.config)
                    b = self._bench(t, tb, reps=1)
                except (WorkerError, ModelFileError, ConfigError) as exc:
                    self._close_worker()
                    self._check_cancel()
                    # it ran in the search, so this says more about the moment than the config: not recorded
                    p.status, p.error_kind = "failed", _kind(exc)
                    p.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    continue
                finally:
                    p.seconds = (p.seconds or 0.0) + time.monotonic() - t0
                pp[i] += b.pp_tok_s
                tg[i] += b.tg_tok_s
        except _Cancelled:
            for p in finals:  # every started probe gets its finished event, as in measure()
                if p.status == "running":
                    p.status, p.error, p.error_kind = "skipped", "cancelled", "cancelled"
                self._emit(ProbeFinished(p, self._best, self._n_done(), self._eta(), self._elapsed()))
            raise
        finally:
            self._keep_spares = False
            self._close_spares()
        for i, p in enumerate(finals):
            if p.status == "running" and tg[i] and pp[i]:
                c = p.config
                p.bench = BenchResult(n_prompt=o.n_prompt, n_gen=o.n_gen, reps=len(tg[i]), pp_tok_s=pp[i], tg_tok_s=tg[i],
                                      n_threads=self._threads(c)[0], n_threads_batch=self._threads(c)[1],
                                      n_batch=c.n_batch, n_ubatch=c.n_ubatch, flash_attn=c.flash_attn,
                                      cache_type_k=c.cache_type_k, cache_type_v=c.cache_type_v)
                p.status = "ok"
                p.score = scoring.score(p.bench, o.objective, o.n_prompt, o.n_gen)  # type: ignore[arg-type]
            elif p.status == "running":
                p.status, p.error_kind, p.error = "failed", "protocol", "the final round returned no figures"
        if any(p.ok for p in finals):
            self._best = final.pick(finals, self._better)
        for p in finals:
            self._emit(ProbeFinished(p, self._best, self._n_done(), self._eta(), self._elapsed()))
        start_final = next((f for f, p in zip(finals, who) if p is start), None)
        return start_final if start_final is not None and start_final.ok else None

    def _final_cost(self, who: list[Probe], rounds: int, keep_loaded: bool) -> float:
        """Seconds the final round would take, from what the search's probes of the same configs took."""
        keys = {_load_key(p.config) for p in who}
        total = 0.0
        for p in who:
            load = p.load_s or 0.0
            per_rep = max(0.0, (p.seconds or 0.0) - load) / max(1, p.bench.reps if p.bench else 1)
            loads = 1 if keep_loaded or len(keys) == 1 else rounds  # without spares, every turn reloads
            total += rounds * per_rep + loads * load
        return total

    def _probe_key(self, p: Probe) -> str:
        return config_key(self._effective(p.config))

    def _spares_fit(self, n: int) -> bool:
        """Can n copies of the model stay loaded at once? Only on a CPU rig (VRAM holds one) with RAM to
        spare: a config without mmap holds its own copy of the weights."""
        if self._gpu_offload():
            return False
        avail = self.rig.memory.available_bytes or 0
        return self._model_bytes() * n <= SPARE_RAM_FRACTION * avail

    def _model_bytes(self) -> int:
        import os

        try:
            return os.path.getsize(self.model_path)
        except OSError:
            return 0

    def measure(self, config: RunConfig, changes: dict[str, Any], *, role: str = "search",
                label: str | None = None, again: bool = False) -> Probe:
        """Measure one config (or return the probe that already measured it, unless `again`). Never raises
        for a config that fails to load or run: the probe says so. Raises _Cancelled when cancelled."""
        key = config_key(self._effective(config))
        if key in self._by_key and not again:
            return self._by_key[key]
        probe = Probe(len(self.probes), config, dict(changes), label or short_label(changes), role=role)
        self.probes.append(probe)
        self._by_key[key] = probe
        if self.store.is_failed(self.rig_fingerprint, self.model_id, config):
            probe.status, probe.error_kind = "skipped", "failed_before"
            probe.error = "failed before on this rig and model; not tried again"
            self._emit(ProbeStarted(probe, self._n_done(), self._eta()))
            self._emit(ProbeFinished(probe, self._best, self._n_done(), self._eta(), self._elapsed()))
            return probe
        self._check_cancel()
        probe.status = "running"
        self._emit(ProbeStarted(probe, self._n_done(), self._eta()))
        t0 = time.monotonic()
        try:
            self._measure_into(probe)
            probe.status = "ok"
        except _Cancelled:
            probe.status, probe.error, probe.error_kind = "skipped", "cancelled", "cancelled"
            probe.seconds = time.monotonic() - t0
            self._emit(ProbeFinished(probe, self._best, self._n_done(), self._eta(), self._elapsed()))
            raise
        except (WorkerError, ModelFileError, ConfigError, DraftMismatch) as exc:
            self._close_worker()  # its state is unknown after a failure: the next probe starts fresh
            if self._cancel is not None and self._cancel.is_set():
                probe.status, probe.error, probe.error_kind = "skipped", "cancelled", "cancelled"
                self._emit(ProbeFinished(probe, self._best, self._n_done(), self._eta(), self._elapsed()))
                raise _Cancelled() from None
            probe.status = "failed"
            probe.error_kind = _kind(exc)
            probe.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if probe.error_kind in RECORDED_KINDS:
                self.store.record_failure(self.rig_fingerprint, self.model_id, config, probe.error_kind, probe.error)
        probe.seconds = time.monotonic() - t0
        # known now if it was not before: the thread counts a config without them gets
        self._by_key.setdefault(config_key(self._effective(config)), probe)
        if probe.ok:
            self._check_headroom(probe)
        if probe.ok:
            o = self.options
            probe.score = scoring.score(probe.bench, o.objective, o.n_prompt, o.n_gen)  # type: ignore[arg-type]
            if self._best is None or self._better(probe, self._best):
                self._best = probe
        self._emit(ProbeFinished(probe, self._best, self._n_done(), self._eta(), self._elapsed()))
        return probe

    # --- start points -----------------------------------------------------------------------------------
    def vram_margin(self) -> int:
        """The VRAM headroom this tune keeps free per GPU (the user's, else the sizing default)."""
        from moetui.sizing.plan import DEFAULT_VRAM_MARGIN

        m = self.options.vram_margin_bytes
        return m if m is not None else DEFAULT_VRAM_MARGIN

    def make_plan(self) -> Any:
        """The sizing core's plan for the user's context and margin (pure and quick; made once)."""
        from moetui.sizing.plan import PlanOptions, plan

        if self.plan is None:
            po = PlanOptions(n_ctx=self.options.n_ctx, vram_margin_bytes=self.vram_margin(), model_path=self.model_path)
            eff = self.store.rig_efficiency(self.rig_fingerprint)
            if eff is not None:  # an earlier tune on this rig measured it: predict (and refit) from there
                po.efficiency = eff
            self.plan = plan(self.info, self.rig, po)
        return self.plan

    def min_ctx(self) -> int:
        """The smallest context the result must run at: the user's --ctx, else the context the plan picks."""
        return self.options.n_ctx if self.options.n_ctx is not None else self.make_plan().config.n_ctx

    def reuse_problem(self, saved: TuneResult) -> str | None:
        """Why a saved profile does not answer this tune (None: it does). The margin only matters where
        a GPU holds weights."""
        return saved.reuse_problem(self.options.objective, self.min_ctx(), self.vram_margin(), self._gpu_offload())

    def _start_config(self) -> RunConfig:
        o = self.options
        self.make_plan()
        cfg = self.plan.config
        if (self.plan.mode == "experts_split" and o.n_prompt == DEFAULT_N_PROMPT
                and "ubatch" in (o.dimensions or DIMENSIONS)):
            # with experts in RAM a GPU copies them over PCIe once per ubatch: only long prompts (and so
            # large ubatches) show what -ub does. The default prompt length grows; an explicit one is kept.
            o.n_prompt = GPU_SPLIT_MIN_PROMPT
            self._emit(TuneProgress(0.0, 0.0, None, f"experts in RAM on a GPU rig: prompt speed measured on "
                                                     f"{o.n_prompt} tokens so larger ubatches can show"))
        need = o.n_prompt + o.n_gen + 8  # the measurement must fit the context
        if cfg.n_ctx < need:
            cfg = cfg.replace(n_ctx=need)
        self._emit(TuneProgress(0.0, 0.0, None, f"plan: {self.plan.mode}, predicted tg {self.plan.decode_tps:.1f} t/s, "
                                                 f"pp {self.plan.prompt_tps:.1f} t/s; measuring it"))
        return cfg.replace(notes=[])

    def default_config(self, start: RunConfig) -> RunConfig:
        """What llama-server/llama-cli do with no flags, at the same context: -t = the physical cores
        (common_cpu_get_num_math), -tb = -t, -b 2048, -ub 512, -fa auto, f16 KV, mmap; -ngl all where a
        GPU can be used (else the plan's, which changes nothing on a CPU-only build)."""
        ngl = -1 if self._gpu_offload() else start.n_gpu_layers
        t = max(1, self.rig.cpu.physical_cores or 1)
        return RunConfig(model_path=self.model_path, n_ctx=start.n_ctx, n_gpu_layers=ngl, n_threads=t, n_threads_batch=t)

    def _baseline(self, start: RunConfig) -> Probe | None:
        # defaults put every expert on the GPU: only meaningful where the plan says that fits
        if self.plan.mode not in ("cpu_only", "all_gpu"):
            return None
        cfg = self.default_config(start)
        # its changes are what differs from the plan, so candidates built on it say what they run
        return self.measure(cfg, config_changes(start, cfg), role="baseline", label="llama.cpp defaults")

    # --- the search ---------------------------------------------------------------------------------------
    def dimensions(self) -> list[str]:
        wanted = self.options.dimensions or DIMENSIONS
        out = []
        for d in DIMENSIONS:
            if d not in wanted:
                continue
            if d == "placement" and not self._placement_applies():
                continue
            if d == "draft" and not self.options.draft_path:
                continue
            out.append(d)
        if self._gpu_offload() and "placement" in out:
            # on a GPU rig where the experts live matters most, then (experts in RAM) the CPU threads that
            # run them for decode and the ubatch that amortises their PCIe copies for prompts; on an H100
            # the threads moved decode by 30-50%, the ubatch prompt speed by 2x (tuning/results/gpu_bench.md)
            second = ("threads", "ubatch") if self.options.objective == "decode" else ("ubatch", "threads")
            first = ["placement", *[d for d in second if d in out]]
            out = first + [d for d in out if d not in first]
        return out

    def _search(self, start: RunConfig) -> str:
        dims = self.dimensions()
        self._emit(TuneProgress(self._fraction(), self._elapsed(), self._eta(), "searching: " + ", ".join(dims)))
        if self._best is None and "placement" not in dims:
            return "exhausted"  # the plan and the defaults failed and nothing else can make it fit
        stopped = "converged"
        searched_from: dict[str, RunConfig | None] = {}  # the best config each dimension was last searched from
        for _ in range(MAX_ROUNDS):
            before = self._best
            for dim in [d for d in dims if d != "draft"]:
                if self._out_of_budget():
                    return "budget"
                if dim in searched_from and not self._worth_again(dim, searched_from[dim]):
                    continue
                searched_from[dim] = self._best.config if self._best else None
                getattr(self, f"_dim_{dim}")()
            if self._out_of_budget():
                return "budget"
            if self._best is before:
                break
        if "draft" in dims:
            self._dim_draft()  # last: it is timed differently (generation), so it runs once, on the winner
            if self._out_of_budget():
                stopped = "budget"
        return stopped

    def _worth_again(self, dim: str, searched_from: RunConfig | None) -> bool:
        """Search a dimension again only when a setting it interacts with changed since it was searched
        (coordinate descent without re-measuring what cannot have moved)."""
        if self._best is None or searched_from is None:
            return True
        changed = changed_dimensions(searched_from, self._best.config)
        return bool(changed & INTERACTS.get(dim, set()))

    def _try(self, configs: Iterable[tuple[RunConfig, dict[str, Any]]]) -> None:
        for cfg, changes in configs:
            if self._out_of_budget():
                return
            self.measure(cfg, changes)

    def _base(self) -> tuple[RunConfig, dict[str, Any]]:
        """The current best (or, when nothing has run yet, the plan) and its changes from the plan."""
        if self._best is not None:
            return self._best.config, dict(self._best.changes)
        plan_probe = self.probes[0]
        return plan_probe.config, {}

    def _with(self, changes: dict[str, Any], **settings: Any) -> tuple[RunConfig, dict[str, Any]]:
        base, ch = self._base()
        ch.update(changes)
        return base.replace(**settings), ch

    # placement: walk the experts-in-RAM axis
    def _placement_applies(self) -> bool:
        if not self._gpu_offload() or not self.info.is_moe or self.plan is None:
            return False
        if self.plan.mode not in ("experts_split", "all_gpu"):
            return False
        axis = PlacementAxis.for_model(self.info)
        return axis is not None and axis.position(self.plan.config) is not None

    def _dim_placement(self) -> None:
        axis = PlacementAxis.for_model(self.info)
        base, _ = self._base()
        pos0 = axis.position(base) if axis else None
        if axis is None or pos0 is None:
            return

        def try_pos(pos: int) -> str:
            if self._out_of_budget():
                return STOP
            before = self._best
            _, ch = self._with({})
            ch = {k: v for k, v in ch.items() if k not in ("n_cpu_moe", "boundary")}
            ch.update(axis.describe(pos))
            p = self.measure(axis.config_at(self._base()[0], pos), ch)
            if not p.ok:
                return FAILED
            if self._best is p:
                return BETTER
            return SAME if before is not None and self._not_worse(p, before) else WORSE

        def best_pos() -> int | None:
            return axis.position(self._best.config) if self._best else None

        walk(pos0, self._best is not None, axis.per_layer, axis.max, try_pos, best_pos)

    def _dim_threads(self) -> None:
        cores = max(1, self.rig.cpu.physical_cores or 1)
        logical = max(cores, self.rig.cpu.logical_cores or cores)
        cands: list[int] = []
        for t in (cores, max(1, cores // 2), logical, cores - 1, 1 if cores <= 4 else cores // 4):
            if t >= 1 and t not in cands:
                cands.append(t)
        measured: list[Probe] = []
        for t in cands:
            if self._out_of_budget():
                return
            cfg, ch = self._with({"n_threads": t, "n_threads_batch": t}, n_threads=t, n_threads_batch=t)
            p = self.measure(cfg, ch)
            if p.ok:
                measured.append(p)
        if len(measured) < 2:
            return
        # decode threads and batch threads are separate settings: combine the best of each
        t_tg = max(measured, key=lambda p: p.tg or 0.0).config.n_threads
        t_pp = max(measured, key=lambda p: p.pp or 0.0).config.n_threads
        if t_tg != t_pp:
            self._try([self._with({"n_threads": t_tg, "n_threads_batch": t_pp}, n_threads=t_tg, n_threads_batch=t_pp)])

    def _dim_ubatch(self) -> None:
        base, _ = self._base()
        # a ubatch of the measured prompt's length or more is one ubatch: no difference to measure
        cands = [u for u in UBATCHES if u <= self.options.n_prompt and u != base.n_ubatch]
        # larger ones help prompt speed (most of all with experts in RAM on a GPU rig); each needs more
        # memory than the last, so the first that fails ends them
        for u in sorted(c for c in cands if c > base.n_ubatch):
            if self._out_of_budget():
                return
            if not self.measure(*self._with({"n_ubatch": u}, n_ubatch=u, n_batch=max(base.n_batch, u))).ok:
                break
        if self.options.objective == "decode":
            return  # a smaller ubatch only slows prompts; the VRAM it frees is the placement walk's business
        self._try(self._with({"n_ubatch": u}, n_ubatch=u, n_batch=max(base.n_batch, u))
                  for u in sorted((c for c in cands if c < base.n_ubatch), reverse=True))

    def _dim_flash_attn(self) -> None:
        base, _ = self._base()
        cands = [fa for fa in ("on", "off") if fa != base.flash_attn]
        if base.cache_type_v != "f16" or base.cache_type_k != "f16":
            cands = [fa for fa in cands if fa == "on"]  # a quantized V cache needs flash attention
        self._try(self._with({"flash_attn": fa}, flash_attn=fa) for fa in cands)

    def _dim_cache_type(self) -> None:
        base, _ = self._base()
        for kv in ("f16", "q8_0"):
            if kv == base.cache_type_k and kv == base.cache_type_v:
                continue
            fa = base.flash_attn if kv == "f16" else "on"  # a quantized V cache needs flash attention
            ch: dict[str, Any] = {"cache_type": kv, **({"flash_attn": fa} if fa != base.flash_attn else {})}
            self._try([self._with(ch, cache_type_k=kv, cache_type_v=kv, flash_attn=fa)])

    def _dim_load_mode(self) -> None:
        # mmap (llama.cpp's default) vs a private copy (none) vs mmap with the pages locked in RAM
        # (--mlock: the kernel can no longer evict or lazily fault expert pages decode touches at random)
        base, _ = self._base()
        mapped = "auto" if base.load_mode == "mmap" else base.load_mode  # auto is mmap where the file allows it
        cands = [m for m in ("auto", "none", "mmap+mlock") if m != mapped]
        if "mmap+mlock" in cands and not self._mlock_possible():
            cands.remove("mmap+mlock")
        self._try(self._with({"load_mode": m}, load_mode=m) for m in cands)

    def _mlock_possible(self) -> bool:
        """Locking the weights only helps, and only works, where RAM holds them with room to spare and
        the memlock limit allows it (else llama.cpp warns, locks nothing, and the probe measures noise)."""
        import os
        import resource

        size = self._model_bytes()
        avail = self.rig.memory.available_bytes or 0
        if not size or size * MLOCK_RAM_HEADROOM > avail:
            return False
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            return True  # CAP_IPC_LOCK: no limit applies
        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        return soft == resource.RLIM_INFINITY or soft >= size

    def _dim_draft(self) -> None:
        """Speculative decoding. bench() times random tokens (no draft can help there), so draft on/off is
        compared by generating a fixed prompt greedily, the winner without a draft timed the same way."""
        best = self._best
        if best is None or best.config.draft is not None:
            return
        ref = self._generate_reference(best)
        if ref is None or not ref.ok:
            return
        self._best = ref  # compare like with like
        for dmax in (4, 8, 16):
            if self._out_of_budget():
                break
            draft = DraftConfig(kind="model", model_path=self.options.draft_path, draft_max=dmax,
                                n_gpu_layers=-1 if self._gpu_offload() else 0)
            cfg, ch = self._with({"draft": "on", "draft_max": dmax}, draft=draft)
            self.measure(cfg, ch)
        if self._best is ref:
            self._best = best  # no draft won: keep the bench-timed probe, comparable with the baseline

    def _generate_reference(self, best: Probe) -> Probe | None:
        changes = {**best.changes, "draft": "off"}
        probe = Probe(len(self.probes), best.config, changes, short_label(changes) + " (timed by generation)",
                      role="reference")
        self.probes.append(probe)
        self._check_cancel()
        probe.status = "running"
        self._emit(ProbeStarted(probe, self._n_done(), self._eta()))
        t0 = time.monotonic()
        try:
            self._measure_into(probe, generate=True)
            probe.status = "ok"
            o = self.options
            probe.score = scoring.score(probe.bench, o.objective, o.n_prompt, o.n_gen)  # type: ignore[arg-type]
        except (WorkerError, ModelFileError, ConfigError) as exc:
            self._close_worker()
            probe.status, probe.error, probe.error_kind = "failed", str(exc).splitlines()[0], _kind(exc)
        probe.seconds = time.monotonic() - t0
        self._emit(ProbeFinished(probe, best, self._n_done(), self._eta(), self._elapsed()))
        return probe

    # --- measuring ----------------------------------------------------------------------------------------
    def _measure_into(self, probe: Probe, generate: bool = False) -> None:
        cfg = probe.config
        generate = generate or cfg.draft is not None
        o = self.options
        if self._ensure_loaded(cfg):
            probe.load_s, probe.reloaded = self._worker.load_info.load_s if self._worker.load_info else None, True
        else:
            probe.reloaded = False
        self._check_cancel()
        t, tb = self._threads(cfg)
        bench = self._generate_bench(t, tb) if generate else self._bench(t, tb)
        for _ in range(MAX_EXTRA_REPS):
            # more repetitions while the spread is large (and time allows)
            if scoring.relative_spread(bench, o.objective, o.n_prompt, o.n_gen) <= NOISY or self._elapsed() >= o.budget_s:
                break
            more = self._generate_bench(t, tb) if generate else self._bench(t, tb)
            bench.pp_tok_s += more.pp_tok_s
            bench.tg_tok_s += more.tg_tok_s
            bench.reps += more.reps
        probe.bench = bench
        probe.vram_bytes = self._vram()

    def _ensure_loaded(self, cfg: RunConfig) -> bool:
        """Make the current worker run `cfg`: change context-level settings on the loaded model, take a
        spare worker that has its weights loaded, or load them. True when it loaded the model."""
        from moetui.runtime.client import ModelWorker

        lkey = _load_key(cfg)
        if self._loaded is not None and self._loaded.key == lkey and self._worker is not None and self._worker.alive:
            ctx = {k: getattr(cfg, k) for k in CONTEXT_KEYS if getattr(cfg, k) != getattr(self._loaded.config, k)}
            if ctx:
                self._worker.reconfigure(**ctx)
            self._loaded.config = cfg
            return False
        if self._keep_spares and self._worker is not None and self._loaded is not None and self._worker.alive:
            self._spares[self._loaded.key] = (self._worker, self._loaded)
            self._worker, self._loaded = None, None
        else:
            self._close_worker()
        spare = self._spares.pop(lkey, None)
        if spare is not None and spare[0].alive:
            self._worker, self._loaded = spare
            return self._ensure_loaded(cfg)  # its context may differ
        if spare is not None:
            spare[0].close()
        self._check_cancel()
        # no progress (a loaded tensor, a measured repetition, a token) for this long means a hang; slow is fine
        timeout = max(STALL_S, self.options.budget_s)
        self._worker = ModelWorker(stall_timeout=timeout, load_timeout=min(timeout, self._hard_left()))
        info = self._worker.start(cfg)
        self._loaded = _Loaded(lkey, cfg, (info.n_threads, info.n_threads_batch))
        self._default_threads = self._default_threads or self._loaded.default_threads
        return True

    def _threads(self, cfg: RunConfig) -> tuple[int, int]:
        """The thread counts a config runs with (its own, else what the loaded model defaulted to)."""
        dt = self._loaded.default_threads if self._loaded else (self._default_threads or (1, 1))
        return cfg.n_threads or dt[0], cfg.n_threads_batch or cfg.n_threads or dt[1]

    def _bench(self, t: int, tb: int, reps: int | None = None) -> BenchResult:
        o = self.options
        b = self._worker.bench(o.n_prompt, o.n_gen, max(1, reps or o.reps), n_threads=t, n_threads_batch=tb,
                               timeout=self._hard_left())
        self._check_cancel()
        if len(b.tg_tok_s) < 1 or len(b.pp_tok_s) < 1:
            raise WorkerError("the measurement returned no figures", kind="protocol")
        return b

    def _generate_bench(self, t: int, tb: int) -> BenchResult:
        from moetui.runtime.client import collect

        o = self.options
        pp, tg = [], []
        for _ in range(max(1, o.reps)):
            self._check_cancel()
            done = collect(self._worker.generate(DRAFT_PROMPT, max_tokens=o.n_gen, temperature=0.0,
                                                 n_threads=t, n_threads_batch=tb, timeout=self._hard_left()))
            if done.stats.prompt_tok_s:
                pp.append(done.stats.prompt_tok_s)
            if done.stats.decode_tok_s_avg:
                tg.append(done.stats.decode_tok_s_avg)
        cfg = self._loaded.config if self._loaded else None
        return BenchResult(n_prompt=o.n_prompt, n_gen=o.n_gen, reps=len(tg), pp_tok_s=pp, tg_tok_s=tg,
                           n_threads=t, n_threads_batch=tb, n_batch=cfg.n_batch if cfg else None,
                           n_ubatch=cfg.n_ubatch if cfg else None, flash_attn=cfg.flash_attn if cfg else None,
                           cache_type_k=cfg.cache_type_k if cfg else None, cache_type_v=cfg.cache_type_v if cfg else None)

    def _vram(self) -> int | None:
        from moetui.runtime.stats import process_vram_bytes

        w = self._worker
        if w is None or w.load_info is None or not self.rig.gpus:
            return None
        v = process_vram_bytes(w.load_info.pid)
        if v is None:
            gpu = {d: n for d, n in w.load_info.buffers.total_by_device().items() if d != "CPU"}
            v = sum(gpu.values()) or None
        return v

    def _check_headroom(self, probe: Probe) -> None:
        """The user's VRAM margin is a constraint: a config that runs but leaves less free is not kept
        (not recorded as failed either: a smaller margin would allow it)."""
        from moetui.sizing.plan import DEFAULT_VRAM_MARGIN

        if probe.vram_bytes is None or not self.rig.gpus:
            return
        margin = self.options.vram_margin_bytes if self.options.vram_margin_bytes is not None else DEFAULT_VRAM_MARGIN
        free = sum((g.vram_free_bytes or g.vram_total_bytes) for g in self.rig.gpus)
        limit = free - margin * len(self.rig.gpus)
        if probe.vram_bytes > limit:
            probe.status, probe.error_kind = "failed", "headroom"
            probe.error = (f"uses {probe.vram_bytes / 2**30:.2f} GiB of VRAM, over the "
                           f"{limit / 2**30:.2f} GiB left after the {margin / 2**30:.2f} GiB margin")

    # --- helpers ------------------------------------------------------------------------------------------
    def _effective(self, cfg: RunConfig) -> RunConfig:
        """The config with the thread counts it actually runs with, so "default threads" and the same
        counts written out are one candidate, not two."""
        if self._default_threads is None or (cfg.n_threads and cfg.n_threads_batch):
            return cfg
        t = cfg.n_threads or self._default_threads[0]
        tb = cfg.n_threads_batch or cfg.n_threads or self._default_threads[1]
        return cfg.replace(n_threads=t, n_threads_batch=tb)

    def _better(self, a: Probe, b: Probe) -> bool:
        o = self.options
        return scoring.better(a.bench, b.bench, o.objective, o.n_prompt, o.n_gen)  # type: ignore[arg-type]

    def _not_worse(self, a: Probe, b: Probe) -> bool:
        o = self.options
        return scoring.not_worse(a.bench, b.bench, o.objective, o.n_prompt, o.n_gen)  # type: ignore[arg-type]

    def _gpu_offload(self) -> bool:
        return bool(self.rig.gpus) and bool(self.rig.build.gpu_offload)

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _n_done(self) -> int:
        return sum(1 for p in self.probes if p.status in ("ok", "failed"))

    def _n_measured(self) -> int:
        return sum(1 for p in self.probes if p.status in ("ok", "failed", "running"))

    def _hard_left(self) -> float:
        """Seconds a request may still take: --budget is a hard limit (the final round's share included);
        a probe still running then is killed as a hang (a hang is not recorded as a failed config)."""
        hard = self.options.budget_s * (1 + FINAL_BUDGET_SHARE)
        return max(1.0, hard - self._elapsed())

    def _out_of_budget(self) -> bool:
        if self._cancel is not None and self._cancel.is_set():
            raise _Cancelled()
        if self.options.max_probes is not None and self._n_measured() >= self.options.max_probes:
            return True
        return self._elapsed() >= self.options.budget_s

    def _check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise _Cancelled()

    def _fraction(self) -> float:
        f = self._elapsed() / self.options.budget_s
        if self.options.max_probes:
            f = max(f, self._n_measured() / self.options.max_probes)
        return min(1.0, f)

    def _eta(self) -> float | None:
        """Time left: the budget's remainder (the search usually converges earlier)."""
        left = self.options.budget_s - self._elapsed()
        if self.options.max_probes:
            done = [p.seconds for p in self.probes if p.seconds]
            if done:
                per = sum(done) / len(done)
                left = min(left, per * max(0, self.options.max_probes - self._n_measured()))
        return max(0.0, left)

    def _emit(self, ev: TuneEvent) -> None:
        if self._on_event is not None:
            self._on_event(ev)

    def _watch_cancel(self, done: threading.Event) -> None:
        assert self._cancel is not None
        while not done.is_set():
            if self._cancel.wait(0.2):
                w = self._worker
                if w is not None:
                    w.stop()  # the bench in flight ends after its current repetition
                return

    def _close_worker(self) -> None:
        w, self._worker, self._loaded = self._worker, None, None
        if w is not None:
            w.kill() if (self._interrupted or (self._cancel is not None and self._cancel.is_set())) else w.close()

    def _close_spares(self) -> None:
        spares, self._spares = self._spares, {}
        for w, _ in spares.values():
            w.kill() if (self._interrupted or (self._cancel is not None and self._cancel.is_set())) else w.close()

    def _nothing_worked(self) -> MoetuiError:
        tried = [p for p in self.probes if p.status in ("failed", "skipped")]
        if not tried or all(p.error_kind == "cancelled" for p in tried):  # Ctrl-C during the first probe
            return TuneFailed("the tune was stopped before any configuration was measured; nothing was saved")
        kinds = {p.error_kind for p in tried}
        last = tried[-1]
        if kinds <= {"oom", "headroom", "failed_before"}:
            return DoesNotFit(f"no configuration of {self.model_path} fits this rig: {len(tried)} tried, "
                              f"the last: {last.error}")
        return TuneFailed(f"no configuration could be measured ({len(tried)} tried); the last: {last.error}")

    def _refit(self, plan_probe: Probe | None) -> dict[str, Any] | None:
        """Efficiency factors scaled so the plan's prediction matches what its config measured: the sizing
        core predicts better for this rig next time (PlanOptions.efficiency)."""
        if plan_probe is None or not plan_probe.ok or not self.plan:
            return None
        eff = self.plan.efficiency
        d = eff.to_dict()
        tg_ratio = (plan_probe.tg or 0.0) / self.plan.decode_tps if self.plan.decode_tps else None
        pp_ratio = (plan_probe.pp or 0.0) / self.plan.prompt_tps if self.plan.prompt_tps else None
        if tg_ratio:
            if self.plan.mode == "cpu_only" or not self._gpu_offload():
                d["cpu_bw"] = eff.cpu_bw * tg_ratio
            elif self.plan.mode == "all_gpu":
                d["gpu_bw"] = eff.gpu_bw * tg_ratio
            else:
                d["cpu_bw"], d["gpu_bw"] = eff.cpu_bw * tg_ratio, eff.gpu_bw * tg_ratio
        if pp_ratio:
            if self.plan.mode == "cpu_only" or not self._gpu_offload():
                d["cpu_gflops_per_core"] = eff.cpu_gflops_per_core * pp_ratio
            else:
                d["gpu_flops_per_bw_byte"] = eff.gpu_flops_per_bw_byte * pp_ratio
        d["source"] = f"tuner: {self.rig_fingerprint} / {self.model_id}"
        d["measured_over_predicted"] = {"decode": tg_ratio, "prompt": pp_ratio}
        return d

    def _notes(self) -> list[str]:
        out = [self._final_skipped] if self._final_skipped else []
        if "ubatch" in self.dimensions() and self.options.n_prompt < UBATCHES[-1]:
            out.append(f"ubatch was searched up to {self.options.n_prompt} (the measured prompt length); "
                       "a longer prompt (n_prompt) explores larger ubatches")
        return out


_OOM_WORDS = ("out of memory", "failed to allocate", "cudamalloc failed", "unable to allocate")


def _kind(exc: BaseException) -> str:
    if isinstance(exc, WorkerError):
        return exc.kind or "error"  # the client already tells OOM from other deaths
    if any(w in str(exc).lower() for w in _OOM_WORDS):
        return "oom"  # a load that runs out of VRAM comes back as a load error (ModelFileError)
    if isinstance(exc, ModelFileError):
        return "load"
    if isinstance(exc, DraftMismatch):
        return "draft_mismatch"
    if isinstance(exc, ConfigError):
        return "config"
    return "error"


def _load_key(cfg: RunConfig) -> tuple[Any, ...]:
    """What needs a reload to change: everything but the context-level settings and threads."""
    d = cfg.to_dict()
    for k in (*CONTEXT_KEYS, *THREAD_KEYS, "notes", "seed"):
        d.pop(k, None)
    import json

    return (json.dumps(d, sort_keys=True),)


def _fingerprint(rig: Rig) -> str:
    from moetui.hardware.fingerprint import fingerprint

    return fingerprint(rig)


def llama_version(rig: Rig | None = None) -> str:
    if rig is not None and rig.build.version:
        return str(rig.build.version)
    try:
        import llama_cpp

        return f"llama-cpp-python {llama_cpp.__version__}"
    except ImportError:
        return "unknown"


def _identity(model_path: str) -> str:
    from moetui.model.inspect import inspect_file

    return inspect_file(model_path).identity


def tune(model_path: str, rig: Rig | None = None, options: TuneOptions | None = None, on_event=None, cancel=None,
         store: ProfileStore | None = None) -> TuneResult:
    """Tune MODEL on this rig, or return the saved profile at once (from_cache=True) unless options.retune.
    A saved profile is reused only when it was tuned for the same objective, at a context >= the one asked
    for (--ctx, else the plan's) and, on a GPU rig, with at least the VRAM headroom asked for (--margin);
    a profile saved by a cancelled tune is not final. Otherwise it is tuned again (and replaced)."""
    from moetui.hardware import detect_rig

    options = options or TuneOptions()
    options.validate()
    rig = rig or detect_rig()
    store = store or ProfileStore()
    tuner = Tuner(model_path, rig, options, store=store)
    if not options.retune:
        saved = store.get(tuner.rig_fingerprint, tuner.model_id, tuner.llama_version)
        # reused only where it honours this tune's objective, minimum context and VRAM headroom
        why = tuner.reuse_problem(saved) if saved is not None else "no saved profile"
        if saved is not None and why is None:
            saved.from_cache = True
            saved.best.config = saved.best.config.replace(model_path=str(model_path))
            if on_event:
                on_event(TuneFinished(saved))
            return saved
        if saved is not None and on_event:
            on_event(TuneProgress(0.0, 0.0, None, f"{why}: tuning again"))
    return tuner.run(on_event, cancel)


def latest_config(model_path: str, rig: Rig | None = None, store: ProfileStore | None = None) -> RunConfig | None:
    """The saved tuned config for this rig and model, if any (with model_path set to `model_path`)."""
    from moetui.hardware import detect_rig

    rig = rig or detect_rig(measure_bandwidth=False)
    store = store or ProfileStore()
    fp = rig.fingerprint or _fingerprint(rig)
    saved = store.get(fp, _identity(model_path), llama_version(rig))
    if saved is None:
        return None
    return saved.best.config.replace(model_path=str(model_path))
