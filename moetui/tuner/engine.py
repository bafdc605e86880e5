"""The tuner: measure the sizing core's plan, search from it, and answer with the winner measured beside
where it started.

Order of work:
  1. the plan, measured on its own; llama.cpp's defaults, compared with it side by side (when they fit);
  2. the search (search.py): the dimensions that apply, in the order the workload's wait says matters
     most, each candidate compared interleaved with the incumbent (duel.py) and kept when better beyond
     the noise, or tied and simpler;
  3. the time budget (checked before each comparison) or max_probes ends it early ("budget");
  4. the final comparison: the winner and the start it must beat (llama.cpp's defaults, else the plan)
     measured side by side once more, so the answer shows both in the same conditions and is never a
     config that, measured beside the start, is no better than it (a tie goes to the simpler start).

The objective is the user's wait: seconds for one turn of a workload (moetui.sizing.workload; --workload).
The prompt is measured at the workload's prompt length, capped (PROMPT_CAP, and what the budget allows at
the predicted speed); decode from an empty cache (the worker's bench has no depth). Notes say both.
The runner (runner.py) owns workers, benchmarks, the clock and each probe's life-cycle.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from moetui.config import RunConfig
from moetui.errors import DoesNotFit, MoetuiError
from moetui.hardware.rig import Rig
from moetui.model.info import ModelInfo
from moetui.tuner.budget import check_budget
from moetui.tuner.duel import duel
from moetui.tuner.events import ProbesCompared, TuneEvent, TuneFinished, TuneProgress
from moetui.tuner.options import DIMENSIONS, MIN_PROMPT, MIN_REPS, TuneOptions, measured_prompt
from moetui.tuner.placement_axis import PlacementAxis
from moetui.tuner.probe import Probe, ProbeRole, ProbeStatus
from moetui.tuner.result import TuneResult
from moetui.tuner.refit import refit_efficiency
from moetui.tuner.runner import Cancelled, ProbeRunner
from moetui.tuner.scoring import Objective
from moetui.tuner.search import Search, SearchSpace, config_changes, order_dimensions
from moetui.tuner.store import ProfileStore
from moetui.hardware.fingerprint import fingerprint
from moetui.hardware.llama_build import llama_version
from moetui.model.inspect import inspect_file
from moetui.sizing import explain
from moetui.sizing.overrides import experts_in_ram_bytes
from moetui.sizing.plan import PlanOptions, gpu_budgets, plan
from moetui.sizing.speed import EfficiencyFactors
import os
import resource

FINAL_BUDGET_SHARE = 0.25  # the final comparison may run this share of the budget past it, no more
MLOCK_RAM_HEADROOM = 1.25  # mlock is tried only when RAM holds the model this many times over


class TuneFailed(MoetuiError):
    """No candidate configuration could be measured."""


class Tuner:
    def __init__(self, model_path: str, rig: Rig, options: TuneOptions | None = None, *,
                 model_info: ModelInfo | None = None, store: ProfileStore | None = None,
                 efficiency: EfficiencyFactors | None = None) -> None:
        """efficiency: what an earlier tune on this rig measured (moetui.resolver hands it in), so the
        plan predicts (and the refit starts) from there; None: the defaults."""
        self.model_path = str(model_path)
        self.rig = rig
        self.options = dataclasses.replace(options) if options else TuneOptions()  # a copy: the tune fills it in
        self.options.validate()
        self.info = model_info or inspect_file(self.model_path)
        self.store = store or ProfileStore()
        self.rig_fingerprint = rig.fingerprint or _fingerprint(rig)
        self.model_id = self.info.identity
        self.llama_version = llama_version(rig)
        self.efficiency = efficiency
        self.plan: Any = None
        self.notes: list[str] = []
        self.runner: ProbeRunner | None = None
        self.search: Search | None = None

    # --- set-up -----------------------------------------------------------------------------------------
    def plan_options(self) -> PlanOptions:
        """The sizing core's options: the user's settings as they are (context, margin, budget, workload,
        KV type, ubatch, experts order), with this rig's measured efficiency. The draft is not planned in:
        the search's draft dimension tries it."""
        return PlanOptions.for_settings(self.options.settings, model_path=self.model_path, efficiency=self.efficiency)

    def make_plan(self) -> Any:
        """The sizing core's plan for the user's settings (pure and quick; made once)."""
        if self.plan is None:
            self.plan = plan(self.info, self.rig, self.plan_options())
        return self.plan

    def min_ctx(self) -> int:
        """The smallest context the result must run at: the user's --ctx, else the context the plan picks."""
        return self.options.n_ctx if self.options.n_ctx is not None else self.make_plan().config.n_ctx

    def reuse_problem(self, saved: TuneResult) -> str | None:
        """Why a saved profile does not answer this tune (None: it does). The margin only matters where
        a GPU holds weights."""
        return saved.reuse_problem(self.options.objective, self.options.settings, self.min_ctx(), self._gpu_offload())

    def _gpu_offload(self) -> bool:
        return bool(self.rig.gpus) and bool(self.rig.build.gpu_offload)

    def prepare(self) -> ProbeRunner:
        """Plan, fix the measured prompt length and build the runner (once)."""
        if self.runner is not None:
            return self.runner
        o, w = self.options, self.options.workload
        self.make_plan()
        if o.n_prompt is None:
            o.n_prompt, note = measured_prompt(w.prompt_tokens, self.plan.prompt_tps, o.budget_s)
            if note:
                self.notes.append(note)
        if w.depth:
            self.notes.append(f"decode speed measured from an empty cache, not at the workload's depth of {w.depth} "
                              "tokens (the worker's bench has no depth)")
        objective = Objective(o.objective, w, o.n_prompt, o.n_gen)
        self.runner = ProbeRunner(self.model_path, self.rig, o, objective, self.store, self.rig_fingerprint,
                                  self.model_id)
        if self.rig.gpus:  # the plan's own budgets: free memory less the margin, within the VRAM budget
            self.runner.vram_limit = sum(gpu_budgets(self.rig, self.plan_options())[1].values())
            self.runner.experts_in_ram_bytes = lambda cfg: experts_in_ram_bytes(self.info, cfg.overrides)
        self.runner.keep_spares = self.runner.spares_fit(2)
        return self.runner

    def start_config(self) -> RunConfig:
        o = self.options
        self.prepare()
        cfg = self.plan.config
        need = (o.n_prompt or 0) + o.n_gen + 8  # the measurement must fit the context
        return (cfg.replace(n_ctx=need) if cfg.n_ctx < need else cfg).replace(notes=[])

    def default_config(self, start: RunConfig) -> RunConfig:
        """What llama-server/llama-cli do with no flags, at the same context: -t = the physical cores
        (common_cpu_get_num_math), -tb = -t, -b 2048, -ub 512, -fa auto, f16 KV, mmap, repack; -ngl all
        where a GPU can be used (else the plan's, which changes nothing on a CPU-only build)."""
        ngl = -1 if self._gpu_offload() else start.n_gpu_layers
        t = max(1, self.rig.cpu.physical_cores or 1)
        return RunConfig(model_path=self.model_path, n_ctx=start.n_ctx, n_gpu_layers=ngl, n_threads=t,
                         n_threads_batch=t, repack=start.repack)  # repack off only where the rig crashes with it

    def space(self, start: RunConfig) -> SearchSpace:
        o, plan = self.options, self.plan
        wanted = o.dimensions or DIMENSIONS
        applies = {"placement": self._placement_applies(), "draft": bool(o.draft_path),
                   "repack": start.repack and plan.mode != "all_gpu",
                   # what the user fixed in the settings is not searched: the winner keeps it
                   "cache_type": o.settings.cache_type is None, "ubatch": o.settings.n_ubatch is None}
        dims = [d for d in DIMENSIONS if d in wanted and applies.get(d, True)]
        w = o.workload
        prompt_s = w.prompt_tokens / plan.prompt_tps if plan.prompt_tps else 0.0
        decode_s = w.reply_tokens / plan.decode_tps if plan.decode_tps else 0.0
        share = prompt_s / (prompt_s + decode_s) if prompt_s + decode_s else 0.0
        if o.objective in ("decode", "prefill"):
            share = 1.0 if o.objective == "prefill" else 0.0
        ordered = order_dimensions(dims, share, plan.mode == "experts_split", self._gpu_offload())
        assert self.runner is not None
        return SearchSpace(dimensions=ordered, objective=self.runner.objective, defaults=self.default_config(start),
                           n_prompt=o.n_prompt or MIN_PROMPT, cores=self.rig.cpu.physical_cores or 1,
                           logical_cores=self.rig.cpu.logical_cores or self.rig.cpu.physical_cores or 1,
                           gpu_offload=self._gpu_offload(), axis=PlacementAxis.for_model(self.info, self.plan.config),
                           mlock_possible=self.mlock_possible(), draft_path=o.draft_path, max_rounds=o.max_rounds,
                           reps=o.reps)

    def _placement_applies(self) -> bool:
        if not self._gpu_offload() or not self.info.is_moe or self.plan.mode not in ("experts_split", "all_gpu"):
            return False
        axis = PlacementAxis.for_model(self.info, self.plan.config)
        return axis is not None and axis.position(self.plan.config) is not None

    def mlock_possible(self) -> bool:
        """Locking the weights only helps, and only works, where RAM holds them with room to spare and
        the memlock limit allows it (else llama.cpp warns, locks nothing, and the probe measures noise)."""
        size = self.prepare().model_bytes()
        if not size or size * MLOCK_RAM_HEADROOM > (self.rig.memory.available_bytes or 0):
            return False
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            return True  # CAP_IPC_LOCK: no limit applies
        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        return soft == resource.RLIM_INFINITY or soft >= size

    # --- the run ------------------------------------------------------------------------------------------
    def measure(self, config: RunConfig, changes: dict[str, Any], role: ProbeRole = ProbeRole.SEARCH) -> Probe:
        """One config measured on its own (never raises for a config that fails: the probe says so)."""
        return self.prepare().measure(config, changes, role)

    def check_budget(self) -> None:
        """Refuse, before anything runs, a budget too small to measure even the plan (budget.py)."""
        check_budget(self.model_path, self.make_plan(), self.options)

    def run(self, on_event: Callable[[TuneEvent], None] | None = None,
            cancel: threading.Event | None = None) -> TuneResult:
        self.check_budget()
        runner = self.prepare()
        runner.start_clock(on_event, cancel)
        done = threading.Event()
        threading.Thread(target=runner.watch_cancel, args=(done,), daemon=True, name="moetui-tune-cancel").start()
        plan_probe = baseline = None
        stopped = "converged"
        try:
            start = self.start_config()
            self.search = search = Search(runner, self.space(start))
            for note in self.notes:
                runner.emit(TuneProgress(0.0, 0.0, None, note))
            runner.emit(TuneProgress(0.0, 0.0, None, f"plan: {explain.mode_words(self.plan.mode)}, predicted decode "
                                     f"{self.plan.decode_tps:.1f} tok/s, prompt {self.plan.prompt_tps:.1f} tok/s; "
                                     "measuring it"))
            search.consider(start, {}, "plan", role=ProbeRole.PLAN)
            plan_probe = runner.probes[0]
            plan_probe.predicted_decode_tps, plan_probe.predicted_prompt_tps = self.plan.decode_tps, self.plan.prompt_tps
            # llama.cpp's defaults put every expert on the GPU: only meaningful where the plan says that fits
            if self.plan.mode in ("cpu_only", "all_gpu"):
                cfg = self.default_config(start)
                search.consider(cfg, config_changes(start, cfg), "defaults", role=ProbeRole.BASELINE,
                                label="llama.cpp defaults")
                baseline = runner.known(cfg)
            stopped = search.run()
            start_probe = baseline if baseline is not None and baseline.ok else plan_probe
            again = self.final_round(start_probe)
            if again is not None and start_probe is baseline:
                baseline = again  # the winner and the defaults as measured side by side: like with like
        except Cancelled:
            stopped = "cancelled"
        except KeyboardInterrupt:
            runner.interrupted = True
            stopped = "cancelled"
        finally:
            runner.close_all()
            done.set()  # ends the watcher
            runner.abandon_running()
        best = self.search.incumbent if self.search else None
        if best is None:
            raise self._nothing_worked()
        result = TuneResult(
            best=best, baseline=baseline, plan_probe=plan_probe,
            predicted={"decode_tps": self.plan.decode_tps, "prompt_tps": self.plan.prompt_tps},
            probes=list(runner.probes), rig_fingerprint=self.rig_fingerprint, model_id=self.model_id,
            llama_version=self.llama_version, objective=self.options.objective, elapsed_s=runner.elapsed(),
            stopped=stopped, model_path=self.model_path, efficiency=self._refit(plan_probe), created=time.time(),
            notes=list(self.notes), settings=self.options.settings, n_prompt=self.options.n_prompt,
            decisions=list(self.search.decisions if self.search else []),
        )
        self.store.put(result)
        runner.emit(TuneFinished(result))
        return result

    def final_round(self, start: Probe | None) -> Probe | None:
        """The winner and the start measured side by side once more (duel.py); the one kept becomes the
        answer. Returns the start's final probe when it ran. Runs past the budget by a bounded share."""
        runner, search = self.prepare(), self.search
        assert search is not None
        best = search.incumbent
        if (best is None or start is None or not best.ok or best.config.draft is not None
                or runner.key(best.config) == runner.key(start.config)):
            return None  # a draft won (timed by generation), or nothing moved from the start
        o = self.options
        if o.max_probes is not None and runner.n_measured() + 2 > o.max_probes:
            return None
        cost = self._final_cost(best, start)
        if cost > FINAL_BUDGET_SHARE * o.budget_s:  # e.g. a large model on a GPU rig that reloads at every turn
            self.notes.append(f"the final side-by-side comparison was skipped: it would take ~{cost:.0f} s")
            return None
        past = max(0.0, runner.elapsed() + cost - o.budget_s)
        runner.emit(TuneProgress(runner.fraction(), runner.elapsed(), runner.eta(),
                                 f"final: {best.label} vs {start.label}, measured side by side"
                                 + (f" (about {past:.0f} s past the budget: the answer is checked beside the start)"
                                    if past >= 1 else "")))
        a = runner.new_probe(best.config, best.changes, ProbeRole.FINAL, f"{best.label} (final)")
        b = runner.new_probe(start.config, start.changes, ProbeRole.FINAL, f"{start.label} (final)")
        if not (runner.open(a) and runner.open(b)):
            self._unless_checked(a, start)
            return None
        d = duel(_NoBudget(runner), a, b, runner.objective, dimension="final", max_rounds=o.max_rounds,
                 candidate_simpler=search.complexity(start.config) < search.complexity(best.config))
        search.decisions.append(d)
        runner.close(a, announce=False)
        runner.close(b, announce=False)
        kept = b if d.kept == "candidate" or not a.ok else a
        if kept.ok:
            search.incumbent = runner.best = kept
        else:
            self._unless_checked(a, start)
        for p in (a, b):
            runner.announce(p)
        runner.emit(ProbesCompared(d))
        return b if b.ok else None

    def _unless_checked(self, final: Probe, start: Probe) -> None:
        """A winner whose final check failed (it did not load again, gave no proper reply) is not the
        answer: the start, measured earlier, is."""
        if final.ok or self.search is None:
            return
        self.notes.append(f"{final.label} failed its final check ({final.error or final.status}): "
                          f"{start.label} is kept")
        self.search.incumbent = self.prepare().best = start

    def _final_cost(self, best: Probe, start: Probe) -> float:
        """Seconds the final comparison would take at least, from what the same configs took before."""
        runner = self.prepare()
        cheap = runner.cheap_switch(best.config, start.config)
        total = 0.0
        for p in (best, start):
            load = p.load_s or 0.0
            per_rep = max(0.0, (p.seconds or 0.0) - load) / max(1, p.bench.reps if p.bench else 1)
            total += MIN_REPS * per_rep + (0.0 if cheap else 2 * load)  # a reload at each switch
        return total

    def _nothing_worked(self) -> MoetuiError:
        probes = self.runner.probes if self.runner else []
        tried = [p for p in probes if p.status in (ProbeStatus.FAILED, ProbeStatus.SKIPPED)]
        if not tried or all(p.error_kind == "cancelled" for p in tried):  # Ctrl-C during the first probe
            return TuneFailed("the tune was stopped before any configuration was measured; nothing was saved")
        kinds = {p.error_kind for p in tried}
        last = tried[-1]
        if kinds == {"budget"}:  # the budget passed the up-front floor, yet the plan was still loading or measuring
            return TuneFailed(f"the {self.options.budget_s:g} s budget ran out before even the plan was measured "
                              f"(it was still at it after {self.runner.elapsed() if self.runner else 0:.0f} s): give "
                              "a larger budget")
        if kinds <= {"oom", "headroom", "failed_before"}:
            return DoesNotFit(f"no configuration of {self.model_path} fits this rig: {len(tried)} tried, "
                              f"the last: {last.error}")
        return TuneFailed(f"no configuration could be measured ({len(tried)} tried); the last: {last.error}")

    def _refit(self, plan_probe: Probe | None) -> dict[str, Any] | None:
        if plan_probe is None or not plan_probe.ok or not self.plan:
            return None
        return refit_efficiency(self.plan, plan_probe, self._gpu_offload(), f"tuner: {self.rig_fingerprint} / {self.model_id}")


class _NoBudget:
    """The runner as the final comparison sees it: the budget is spent, the comparison still finishes
    (its rounds are bounded); only a cancel stops it."""

    def __init__(self, runner: ProbeRunner) -> None:
        self._r = runner

    def turn(self, probe: Probe, reps: int, *, generate: bool = False, record: bool = True) -> bool:
        return self._r.turn(probe, reps, generate=generate, record=record)

    def cheap_switch(self, a: RunConfig, b: RunConfig) -> bool:
        return self._r.cheap_switch(a, b)

    def out_of_budget(self) -> bool:
        self._r.check_cancel()
        return False


def _fingerprint(rig: Rig) -> str:
    return fingerprint(rig)
