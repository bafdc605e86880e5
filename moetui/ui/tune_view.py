"""How a tune reads on screen, for the Tune and Best-config screens alike: one message that carries a
tuner event from the worker thread to the screen (`TunerEvent`, posted with the thread-safe
`post_message`), one `TuneView` that turns events into the progress bar, the plot, the table and the
best line, and the words for a probe ("12 threads, micro-batch 2048: decode 41.2 ± 1.3 tok/s").

Everything a screen shows about a tune goes through `TuneView.apply`, so a new event field (the tuner's
evidence: medians, spreads, repetitions) is handled here, once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from moetui.ui.probe_words import _median_spread, describe_probe, probe_figures, probe_name  # noqa: F401
from moetui.tuner import ProbeFinished, ProbesCompared, ProbeStarted, TuneFinished, TuneProgress

if TYPE_CHECKING:
    from moetui.tuner import Probe, TuneEvent, TuneResult
    from moetui.ui.widgets.probe_plot import ProbePlot
    from moetui.ui.widgets.probe_table import ProbeTable
    from moetui.ui.widgets.progress_eta import ProgressEta


@dataclass
class TunerEvent(Message):
    """A tuner event (ProbeStarted, ProbeFinished, TuneProgress, TuneFinished), posted from the tuner's
    worker thread to the screen that started it."""

    event: TuneEvent


@dataclass
class TuneEnded(Message):
    """The tuner thread is done: a result, or the error that ended it (`cancelled`: the user's cancel)."""

    result: TuneResult | None = None
    error: BaseException | None = None
    cancelled: bool = False


def relative_noise(probe: Probe, objective: str) -> float:
    """The probe's spread relative to its median, on the figure the objective scores (0 when unknown)."""
    b = probe.bench
    if b is None:
        return 0.0
    pairs = {"decode": [(b.tg_median, b.tg_stdev)], "prefill": [(b.pp_median, b.pp_stdev)]}.get(
        objective, [(b.tg_median, b.tg_stdev), (b.pp_median, b.pp_stdev)])
    return max((sd / m for m, sd in pairs if m and sd), default=0.0)


def versus_plan(result: TuneResult) -> str:
    """How the winner compares with the measured plan, honestly: the same config, within the noise of
    the repetitions, or a gain (or loss) larger than that noise."""
    best, plan = result.best, result.plan_probe
    if plan is None or not plan.score or not best.score:
        return ""
    if best.config == plan.config:
        return "the plan itself was fastest"
    change = best.score / plan.score - 1
    noise = math.hypot(relative_noise(best, result.objective), relative_noise(plan, result.objective))
    if abs(change) <= noise:
        return f"within the noise of the plan ({change * 100:+.0f}%, noise ±{noise * 100:.0f}%)"
    return f"{change * 100:+.0f}% vs the plan"


# ---- events -> widgets --------------------------------------------------------------------------------
class TuneView:
    """Applies tuner events to a screen's widgets; any of them may be None (Best config has no table).
    The bar is driven by time: elapsed / (elapsed + ETA) while the tuner gives an ETA, else elapsed /
    budget; it reaches 100% only when the tune ends by itself, never on a cancel."""

    def __init__(self, progress: ProgressEta | None, plot: ProbePlot | None = None,
                 table: ProbeTable | None = None, budget_s: float | None = None) -> None:
        self.progress, self.plot, self.table = progress, plot, table
        self.budget_s = budget_s
        self.best: Probe | None = None
        self.events_seen = 0
        self._t0 = time.monotonic()

    def restart(self, budget_s: float | None, message: str = "starting …") -> None:
        self.budget_s, self.best, self.events_seen, self._t0 = budget_s, None, 0, time.monotonic()
        if self.progress is not None:
            self.progress.reset(message)
            if budget_s is not None:  # a run starts (None: just clearing the view): its clock ticks
                self.progress.start_clock(budget_s)
        if self.plot is not None:
            self.plot.clear()
        if self.table is not None:
            self.table.clear_probes()

    def fraction(self, elapsed_s: float | None, eta_s: float | None) -> float:
        elapsed = elapsed_s if elapsed_s is not None else time.monotonic() - self._t0
        if eta_s is not None and elapsed + eta_s > 0:
            return min(0.99, elapsed / (elapsed + eta_s))
        if self.budget_s:
            return min(0.99, elapsed / self.budget_s)
        return 0.0

    def apply(self, ev: Any) -> Probe | None:
        """Show one event; returns the best probe so far when the event names one."""
        self.events_seen += 1
        if isinstance(ev, ProbeStarted):
            self._probe(ev.probe, running=True)
            self._progress(None, ev.eta_s, f"probe {ev.probe.index}: {probe_name(ev.probe)}")
        elif isinstance(ev, ProbeFinished):
            self._probe(ev.probe)
            self._progress(ev.elapsed_s, ev.eta_s, f"{ev.n_done} probe{'s' if ev.n_done != 1 else ''} done")
            if ev.best is not None:
                self.set_best(ev.best)
        elif isinstance(ev, ProbesCompared):  # the evidence: both sides' medians, spreads, repetitions
            self._progress(None, None, ev.decision.describe())
        elif isinstance(ev, TuneProgress):
            self._progress(ev.elapsed_s, ev.eta_s, ev.message)
        elif isinstance(ev, TuneFinished):
            self.finished(ev.result)
        return self.best

    def _probe(self, probe: Probe, running: bool = False) -> None:
        if self.table is not None:
            self.table.upsert(probe)
        if self.plot is not None:
            self.plot.set_point(probe.index, None if running else probe.score, "running" if running else probe.status)

    def _progress(self, elapsed_s: float | None, eta_s: float | None, message: str) -> None:
        if self.progress is not None:
            self.progress.update_progress(self.fraction(elapsed_s, eta_s), eta_s=eta_s, elapsed_s=elapsed_s,
                                          message=message)

    def set_best(self, best: Probe) -> None:
        self.best = best
        if self.table is not None:
            self.table.set_best(best.index)
        if self.plot is not None:
            self.plot.best_index = best.index

    def finished(self, result: TuneResult) -> None:
        """A finished (or saved) result: every probe, the best, and the bar full unless it was cancelled."""
        for p in result.probes:
            self._probe(p)
        if result.best is not None:
            self.set_best(result.best)
        if self.progress is None:
            return
        ran_here = self.progress.clock_running
        self.progress.stop_clock()  # the elapsed time stays where the run ended
        if result.from_cache:
            message, fraction = "from the saved profile (tick Retune to measure again)", 1.0
        elif result.stopped == "cancelled":
            message, fraction = "cancelled", None
        else:
            message, fraction = f"done: {result.stopped}", 1.0
        self.progress.update_progress(fraction, eta_s=None, elapsed_s=None if ran_here else result.elapsed_s,
                                      message=message)

    def stopped(self, message: str) -> None:
        """The run ended without a result (cancelled, failed): the clock stops where it ended."""
        if self.progress is not None:
            self.progress.stop_clock()
            self.progress.message = message
