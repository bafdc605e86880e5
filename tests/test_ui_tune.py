"""Tune screen through the real app: a tiny budget on a tiny MoE proxy with the real tuner and real
llama-cpp-python workers fills the probe table, the plot and the best line, and the winner becomes the
app's active config; cancel stops a run early; a bad budget is refused with a message."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil
from ui_pilot import wait_for

from moetui.hardware import Rig
from moetui.tuner import TuneOptions
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.chat import ChatScreen
from moetui.ui.screens.tune import TuneScreen
from moetui.ui.widgets.probe_plot import ProbePlot
from moetui.ui.widgets.probe_table import ProbeTable
from moetui.ui.widgets.progress_eta import ProgressEta

SIZE = (80, 24)


def worker_children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "moetui.runtime.worker_main" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out
# ends after 3 measured probes (a time budget alone gives fewer probes when the machine is busy)
FAST = TuneOptions(budget_s=60, n_prompt=64, n_gen=16, reps=3, max_probes=3)


async def open_tune(app: MoetuiApp, pilot, options: TuneOptions) -> TuneScreen:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
    screen = TuneScreen(options=options)
    app.install_screen(screen, "tune")
    if isinstance(app.screen, ChatScreen):
        await pilot.press("escape")  # out of the message box: letter keys reach the app
    await pilot.press("t")
    await wait_for(pilot, lambda: app.screen is screen, what="the tune screen")
    return screen


def test_tune_runs_a_small_budget_and_the_best_becomes_the_config(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            # a model loaded in Chat is released before the tuner measures (it would skew or OOM the probes)
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.loaded_config is not None,
                           what="Chat's model")
            chat = app.screen
            chat_pid = chat.model_worker.pid
            tune = await open_tune(app, pilot, FAST)
            await pilot.press("s")
            assert tune.running
            assert chat.model_worker is None
            await wait_for(pilot, lambda: not psutil.pid_exists(chat_pid) or
                           psutil.Process(chat_pid).status() == psutil.STATUS_ZOMBIE, what="Chat's model to exit")
            await wait_for(pilot, lambda: not tune.running, timeout=30, what="the tune to finish")
            result = tune.result
            assert result is not None and not result.from_cache and result.stopped in ("budget", "converged", "exhausted")
            table = tune.query_one(ProbeTable)
            assert table.row_count == len(result.probes) >= 2
            ok = [p for p in result.probes if p.status == "ok"]
            assert ok and all(p.score and p.score > 0 for p in ok)
            assert table.best_index == result.best.index
            assert str(table.get_cell(str(result.best.index), "status")) == "★"
            plot = tune.query_one(ProbePlot)
            assert plot.best_index == result.best.index and len(plot.points) == len(result.probes)
            assert "tok/s per probe, max" in str(plot.render())
            assert tune.query_one(ProgressEta).fraction == 1.0
            assert tune.events_seen >= 2 * len(result.probes)  # started + finished per probe, live
            assert "Best:" in str(tune.query_one("#tune-best").render())
            # TuneCompleted reached the App: Chat and Export now use the winner
            await wait_for(pilot, lambda: app.state.tuned is result, what="TuneCompleted")
            assert app.state.config == result.best.config and app.state.active_config() == result.best.config

            # a second start finds the saved profile at once (retune unticked)
            await pilot.click("#tune-start")
            await wait_for(pilot, lambda: not tune.running and tune.result is not result, what="the cached result")
            assert tune.result.from_cache and "saved profile" in str(tune.query_one("#tune-best").render())

    asyncio.run(run())


def test_cancel_stops_early_and_a_bad_budget_is_refused(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            tune = await open_tune(app, pilot, TuneOptions(budget_s=600, n_prompt=64, n_gen=16, reps=3))
            tune.query_one("#tune-budget").value = "-5"
            await pilot.press("s")
            await pilot.pause()
            assert not tune.running and any("budget" in n.message for n in app._notifications)
            tune.query_one("#tune-budget").value = "600"
            await pilot.press("s")
            await wait_for(pilot, lambda: tune.events_seen >= 2, what="the first events")
            t0 = time.monotonic()
            await pilot.press("escape")
            await wait_for(pilot, lambda: not tune.running, timeout=15, what="the cancel")
            assert time.monotonic() - t0 < 10
            assert tune.result is None or tune.result.stopped == "cancelled"
            assert app.state.tuned is None  # a cancelled tune does not change the config
            assert app.is_running
            # quitting mid-tune stops the tuner and its model process
            assert app.screen is tune, getattr(app.screen, "message", app.screen)
            await pilot.click("#tune-start")
            await wait_for(pilot, lambda: tune.running and worker_children(), what="a probe's model process")
        await asyncio.sleep(0)
        deadline = time.monotonic() + 15
        while worker_children() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert worker_children() == []

    asyncio.run(run())


def test_the_workload_picker_sets_what_the_tune_optimises(tiny_moe: Path, cpu_rig: Rig) -> None:
    from textual.widgets import Select

    from moetui.sizing.workload import WORKLOADS

    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            tune = await open_tune(app, pilot, FAST)
            assert tune.options().workload == WORKLOADS["chat"] and tune.options().objective == "turn"
            tune.query_one("#tune-workload", Select).value = "long-prompt"
            await pilot.pause()
            assert tune.options().workload == WORKLOADS["long-prompt"]

    asyncio.run(run())


# ---- results read true: words, median ± spread, the noise of the plan, a bar driven by time --------------
def _probe(index: int, changes: dict, tg: list[float], label: str | None = None, n_threads: int = 4):  # type: ignore[no-untyped-def]
    from moetui.config import RunConfig
    from moetui.runtime.bench import BenchResult
    from moetui.tuner.probe import Probe, short_label

    cfg = RunConfig(model_path="m.gguf", n_threads=n_threads)
    return Probe(index, cfg, changes, label or short_label(changes), status="ok",
                 bench=BenchResult(0, 128, len(tg), tg_tok_s=tg), score=sorted(tg)[len(tg) // 2])


def _result(best, plan, stopped: str = "budget"):  # type: ignore[no-untyped-def]
    from moetui.tuner import TuneResult

    return TuneResult(best=best, baseline=None, plan_probe=plan, predicted={}, probes=[plan, best],
                      rig_fingerprint="r", model_id="m", llama_version="v", objective="decode", elapsed_s=10.0,
                      stopped=stopped)


def test_probes_are_named_in_words_with_median_and_spread() -> None:
    from moetui.ui.tune_view import describe_probe, probe_name

    p = _probe(3, {"n_threads": 1, "n_threads_batch": 2, "n_ubatch": 1024}, [40.0, 41.0, 42.5], label="t 1, tb 2, ub 1024 (final)")
    assert probe_name(p) == "1 thread, 2 prompt threads, micro-batch 1024 (final)"
    assert describe_probe(p) == "1 thread, 2 prompt threads, micro-batch 1024 (final): decode 41.0 ± 1.3 tok/s"
    assert probe_name(_probe(0, {}, [1.0])) == "the plan"
    assert probe_name(_probe(1, {"n_threads": 2}, [1.0], label="llama.cpp defaults")) == "llama.cpp defaults"


def test_the_verdict_against_the_plan_is_honest() -> None:
    from moetui.ui.tune_view import versus_plan

    plan = _probe(0, {}, [100.0, 110.0, 90.0])
    assert versus_plan(_result(_probe(5, {}, [101.0, 99.0, 100.0], label="plan (final)"), plan)) == \
        "the plan itself was fastest"  # the same config re-measured is no gain
    near = _probe(6, {"n_threads": 2}, [104.0, 106.0, 105.0], n_threads=2)
    assert versus_plan(_result(near, plan)).startswith("within the noise of the plan (+5%")
    far = _probe(7, {"n_threads": 2}, [150.0, 151.0, 149.0], n_threads=2)
    assert versus_plan(_result(far, plan)) == "+50% vs the plan"


def test_the_bar_follows_time_and_a_cancel_never_shows_done() -> None:
    import pytest

    from moetui.ui.tune_view import TuneView

    bar = ProgressEta()
    view = TuneView(bar, budget_s=100)
    assert view.fraction(30.0, 70.0) == pytest.approx(0.3)  # elapsed / (elapsed + ETA)
    assert view.fraction(50.0, None) == pytest.approx(0.5)  # no ETA yet: elapsed / budget
    assert view.fraction(500.0, None) == 0.99  # never "done" before it is
    plan = _probe(0, {}, [100.0])
    view.finished(_result(plan, plan, stopped="cancelled"))
    assert bar.fraction == 0.0 and bar.message == "cancelled"
    view.finished(_result(plan, plan, stopped="converged"))
    assert bar.fraction == 1.0


def test_a_tune_finished_elsewhere_replaces_the_one_on_show() -> None:
    """Best config tuned while Tune showed an older result: Tune shows the new one, not a stale one."""
    from moetui.hardware import load_preset
    from moetui.ui.state import TuneCompleted

    async def main() -> None:
        app = MoetuiApp(rig=load_preset("rtx4090-ddr5-64"), detect=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("t")
            await wait_for(pilot, lambda: app.screen is app.screen_named("tune"), what="the tune screen")
            tune = app.screen
            plan = _probe(0, {}, [100.0, 101.0])
            first = _result(plan, plan, stopped="converged")
            app.post_message(TuneCompleted(first))
            await wait_for(pilot, lambda: tune.result is first, what="the first result")
            newer = _result(_probe(1, {"n_threads": 2}, [150.0, 151.0], n_threads=2), plan, stopped="converged")
            app.post_message(TuneCompleted(newer))
            await wait_for(pilot, lambda: tune.result is newer, what="the newer result")
            assert "+50% vs the plan" in str(tune.query_one("#tune-best").render())

    asyncio.run(main())
