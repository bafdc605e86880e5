"""Best config's dead ends end in choices, on the real app: nothing in the catalog reaching the minimum
speed shows a short table (model, quant, predicted tok/s, why not) with "lower the minimum", "take the
fastest anyway" and "use a local model"; a hub that cannot be reached (HF_HUB_OFFLINE=1 in tests) says so
and offers what works offline: a local model, the demo model, the picked model's proxy, what-if rigs."""

from __future__ import annotations

import asyncio

from ui_pilot import wait_for
from test_ui_best import FAST, SIZE, open_best, statuses

from moetui.hardware import Rig
from moetui.hub.catalog import CatalogModel, QuantFile
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.best import BestConfigScreen
from moetui.ui.widgets.choice_dialog import ChoiceDialog

HUGE = CatalogModel("too-big", "Too Big", "qwen3-235b-a22b", ["me/huge-GGUF"],
                    [QuantFile("Q4_K_M", ["huge.gguf"], 10**15, "me/huge-GGUF")])
SMALL = CatalogModel("small-one", "Small One", "qwen1.5-moe-a2.7b", ["me/small-GGUF"],
                     [QuantFile("Q8_0", ["small-Q8_0.gguf"], 15 * 10**9, "me/small-GGUF"),
                      QuantFile("Q4_K_M", ["small-Q4_K_M.gguf"], 9 * 10**9, "me/small-GGUF")])
UNREACHABLE_MINIMUM = 100_000.0  # tok/s no CPU reaches: nothing in the catalog qualifies


def _dialog(app: MoetuiApp) -> ChoiceDialog:
    assert isinstance(app.screen, ChoiceDialog), type(app.screen)
    return app.screen


def _table(dialog: ChoiceDialog) -> list[list[str]]:
    return [[str(c) for c in row] for row in dialog.rows]


async def _press(app: MoetuiApp, pilot, key: str) -> None:  # type: ignore[no-untyped-def]
    """Press the dialog's button `key` as a user does: Tab to it, Enter (it must be on screen)."""
    await wait_for(pilot, lambda: bool(app.screen.query(f"#choice-{key}")), what=f"the {key} button")
    button = app.screen.query_one(f"#choice-{key}")
    for _ in range(8):
        if app.screen.focused is button:
            break
        await pilot.press("tab")
    assert app.screen.focused is button
    region = button.region
    assert region.right <= SIZE[0] and region.bottom <= SIZE[1] and region.width > 0, "button off screen"
    await pilot.press("enter")
    await pilot.pause()


async def _nothing_fits(app: MoetuiApp, pilot) -> BestConfigScreen:  # type: ignore[no-untyped-def]
    """Best config on a catalog where nothing reaches the minimum, up to its dialog."""
    best = BestConfigScreen(budget_s=5, tune_options=FAST, catalog=[HUGE, SMALL])
    best.min_decode_tps = UNREACHABLE_MINIMUM
    await open_best(app, pilot, best)
    await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the nothing-fits dialog")
    return best


def test_nothing_fits_is_a_short_table_and_lowering_the_minimum_picks_the_fastest(cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            best = await _nothing_fits(app, pilot)
            d = _dialog(app)
            assert "reaches 100000 tok/s" in d.title_text
            assert d.columns == ["model", "quant", "tok/s", "why not"]
            rows = _table(d)
            assert [r[0] for r in rows] == ["Small One", "Too Big"]  # fastest first, the misfit last
            small, huge = rows
            assert small[1] == "Q4_K_M" and float(small[2]) > 0 and small[3] == "below 100000 tok/s"
            assert huge[2] == "-" and huge[3].startswith("too big")
            assert all(len(" ".join(r)) < 100 for r in rows), "one short line per model"
            assert [k for k, _ in d.choices] == ["lower", "anyway", "local"]
            assert best.outcome == "failed" and statuses(best)["model"] == "failed"

            await _press(app, pilot, "lower")
            assert float(small[2]) - 0.11 <= best.min_decode_tps <= float(small[2])  # what Small One reaches
            # the rerun picks Small One at the lowered minimum; the download then meets the offline hub
            await wait_for(pilot, lambda: best.outcome is not None and not best.running, what="the rerun")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the offline dialog")
            assert statuses(best)["model"] == "done" and statuses(best)["download"] == "failed"
            assert _dialog(app).title_text == "The hub cannot be reached"

    asyncio.run(run())


def test_take_the_fastest_anyway_then_offline_plan_its_proxy(cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            best = await _nothing_fits(app, pilot)
            await _press(app, pilot, "anyway")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the offline dialog")
            assert "taken anyway" in best.query_one("#best-steps").render().plain
            d = _dialog(app)
            assert "offline" in d.message and "What works offline" in d.message
            assert [k for k, _ in d.choices] == ["local", "demo", "proxy", "rig"]
            await _press(app, pilot, "proxy")
            await wait_for(pilot, lambda: app.state.model_path == "qwen1.5-moe-a2.7b:Q4_K_M"
                           and app.state.plan is not None, what="the proxy planned")
            await wait_for(pilot, lambda: app.screen is app.screen_named("plan"), what="the Plan screen")

    asyncio.run(run())


def test_offline_the_demo_model_runs_the_whole_flow(cpu_rig: Rig) -> None:
    """No model selected, hub offline: Best config picks from the catalog, cannot download, and one
    choice later it has tuned the demo model and opened Chat."""
    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            best = BestConfigScreen(budget_s=5, tune_options=FAST, catalog=[SMALL])
            best.min_decode_tps = 0.1
            await open_best(app, pilot, best)
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the offline dialog")
            await _press(app, pilot, "demo")
            await wait_for(pilot, lambda: best.outcome == "done", timeout=120, what="the flow on the demo model")
            assert best.model_path and "demo-qwen3-30b-a3b-tiny" in best.model_path
            assert statuses(best)["download"] == "skipped" and statuses(best)["tune"] == "done"

    asyncio.run(run())


def test_local_model_choice_opens_models(cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            await _nothing_fits(app, pilot)
            await _press(app, pilot, "local")
            await wait_for(pilot, lambda: app.screen is app.screen_named("models"), what="the Models screen")

    asyncio.run(run())
