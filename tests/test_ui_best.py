"""Best config for my rig, end to end through the real app: on the selected local tiny proxy (rig →
model → plan → real tune → Chat answering with the winner), and from the catalog through the fake hub
(pick the best fit, download it with progress, plan, tune, chat). Failures mark their step and the app
stays up."""

from __future__ import annotations

import dataclasses

import asyncio
from pathlib import Path

from textual.widgets import Static
from ui_pilot import wait_for
from hub_server import fake_hub  # noqa: F401

from moetui.hardware import Rig
from moetui.hub.catalog import CatalogModel, QuantFile
from moetui.tuner import TuneOptions
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.best import BestConfigScreen
from moetui.ui.screens.chat import ChatScreen
from moetui.ui.widgets.chat_log import ChatLog
from moetui.ui.widgets.flow_checklist import FlowChecklist
from moetui.ui.widgets.format import tps
from moetui.ui.widgets.choice_dialog import ChoiceDialog
from moetui.ui.widgets.flow_error_dialog import FlowErrorDialog

SIZE = (80, 24)
FAST = TuneOptions(budget_s=5, n_prompt=64, n_gen=16, reps=3, dimensions=("threads", "ubatch"), max_probes=2)


def statuses(screen: BestConfigScreen) -> dict[str, str]:
    return {s.key: s.status for s in screen.query_one(FlowChecklist).steps}


def statuses_detail(screen: BestConfigScreen, key: str) -> str:
    return next(s.detail or "" for s in screen.query_one(FlowChecklist).steps if s.key == key)


async def open_best(app: MoetuiApp, pilot, screen: BestConfigScreen) -> BestConfigScreen:  # type: ignore[no-untyped-def]
    app.install_screen(screen, "best")
    await pilot.press("b")
    await wait_for(pilot, lambda: app.screen is screen or screen.outcome is not None, what="the best screen")
    return screen


async def chat_answers(app: MoetuiApp, pilot) -> ChatScreen:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="Chat to open")
    chat: ChatScreen = app.screen  # type: ignore[assignment]
    chat.max_tokens = 6
    await wait_for(pilot, lambda: chat.loaded_config is not None, what="the tuned model to load")
    chat.send("hello")
    await wait_for(pilot, lambda: chat.last_done is not None, what="a reply")
    assert chat.last_done.stats.tokens == 6 and chat.query_one(ChatLog).messages[-1].text
    return chat


def test_best_config_on_the_selected_local_model(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.model_info is not None, what="the selection")
            best = await open_best(app, pilot, BestConfigScreen(budget_s=5, tune_options=FAST))
            await wait_for(pilot, lambda: best.outcome is not None, what="the flow")
            assert best.outcome == "done", best.query_one(FlowChecklist).render()
            assert statuses(best) == {"rig": "done", "model": "done", "download": "skipped", "plan": "done",
                                      "tune": "done", "chat": "done"}
            result = best.result
            assert result is not None and not result.from_cache and any(p.status == "ok" for p in result.probes)
            assert best.model_path == str(tiny_moe)
            # every speed says what it is (#28): the plan's predicted from the default factors, the winner's
            # measured, and when
            assert "predicted" in statuses_detail(best, "plan") and "(default factors)" in statuses_detail(best, "plan")
            assert f": measured {tps(result.best.tg)} tok/s decode" in statuses_detail(best, "tune")
            assert "just now" in statuses_detail(best, "tune")
            assert ": measured" in str(best.query_one("#best-detail", Static).render())
            chat = await chat_answers(app, pilot)
            # Chat runs exactly the tuned winner
            assert app.state.tuned is result and chat.loaded_config == result.best.config

    asyncio.run(run())


def test_best_config_from_the_catalog_downloads_through_the_hub(fake_hub, tiny_moe: Path, cpu_rig: Rig,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    size = tiny_moe.stat().st_size
    # same shape (sized once), a file no rig holds: the pick must skip it for the one that fits
    big = CatalogModel("too-big", "Too Big", "qwen3-30b-a3b", ["me/huge-GGUF"],
                       [QuantFile("Q4_K_M", ["huge.gguf"], 10**15, "me/huge-GGUF")])
    tiny = CatalogModel("tiny-moe", "Tiny MoE", "qwen3-30b-a3b", ["me/tiny-GGUF"],
                        [QuantFile("Q4_K_M", ["tiny-moe-Q4_K_M.gguf"], size, "me/tiny-GGUF")])
    catalog = [big, tiny]

    # the pick plans by predicted speed: give the rig the RAM bandwidth the fixture skips measuring (a
    # full-size shape at the 20 GB/s fallback on 2 threads predicts under the 10 tok/s minimum)
    rig = dataclasses.replace(cpu_rig, ram_bandwidth_gbs=100.0)

    async def run() -> None:
        app = MoetuiApp(rig=rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            best = await open_best(app, pilot, BestConfigScreen(budget_s=5, tune_options=FAST, catalog=catalog))
            await wait_for(pilot, lambda: best.outcome is not None, what="the flow")
            assert best.outcome == "done", best.query_one(FlowChecklist).render()
            steps = {s.key: s for s in best.query_one(FlowChecklist).steps}
            assert all(s.status == "done" for s in steps.values()), steps
            assert "Tiny MoE Q4_K_M" in steps["model"].detail and "tiny-moe-Q4_K_M.gguf" in steps["download"].detail
            assert "tok/s (default factors)" in steps["model"].detail  # the pick's speed: predicted, from what
            local = Path(best.model_path)
            assert local.is_relative_to(tmp_path / "hf-cache") and local.read_bytes() == tiny_moe.read_bytes()
            assert any(path.startswith("/cdn/") for _, path, _ in fake_hub.log)  # really downloaded
            assert app.state.model_path == str(local)
            await chat_answers(app, pilot)

    asyncio.run(run())


def test_a_failing_step_is_marked_and_the_app_stays_up(cpu_rig: Rig, tmp_path: Path) -> None:
    """Offline (HF_HUB_OFFLINE=1 in tests) with a hub model selected: the download step fails clearly."""
    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            app.state.model_path = "me/not-cached-GGUF:Q4_K_M"
            best = await open_best(app, pilot, BestConfigScreen(budget_s=5, tune_options=FAST))
            await wait_for(pilot, lambda: best.outcome is not None, what="the flow")
            assert best.outcome == "failed"
            assert statuses(best) == {"rig": "done", "model": "done", "download": "failed", "plan": "skipped",
                                      "tune": "skipped", "chat": "skipped"}
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the dialog")
            assert app.screen.title_text == "The hub cannot be reached" and "offline" in app.screen.message
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is best and app.is_running and not best.running

    asyncio.run(run())


def test_cancel_during_the_tune_stops_the_flow_before_chat(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.model_info is not None, what="the selection")
            best = await open_best(app, pilot, BestConfigScreen(budget_s=600, tune_options=FAST))
            await wait_for(pilot, lambda: statuses(best).get("tune") == "running", what="the tune step")
            await pilot.press("escape")
            await wait_for(pilot, lambda: best.outcome is not None, timeout=15, what="the cancel")
            assert best.outcome == "cancelled"
            st = statuses(best)
            assert st["plan"] == "done" and st["tune"] == "skipped" and st["chat"] == "skipped"
            assert app.screen is best and app.state.tuned is None
            assert str(best.query_one("#best-start").label) == "Run again"

    asyncio.run(run())


def test_a_corrupt_download_fails_its_step_with_a_dialog(fake_hub, tiny_moe: Path, cpu_rig: Rig) -> None:  # noqa: F811
    """The hub advertises a sha256 the bytes do not have: the download step fails, nothing is planned."""
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    fake_hub.wrong_sha.add("tiny-moe-Q4_K_M.gguf")

    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            app.state.model_path = "me/tiny-GGUF:Q4_K_M"
            best = await open_best(app, pilot, BestConfigScreen(budget_s=5, tune_options=FAST))
            await wait_for(pilot, lambda: best.outcome is not None, what="the flow")
            assert best.outcome == "failed" and statuses(best)["download"] == "failed"
            await wait_for(pilot, lambda: isinstance(app.screen, FlowErrorDialog), what="the dialog")
            assert app.screen.title_text == "Download failed" and "sha256 mismatch" in app.screen.message
            await pilot.press("escape")
            assert app.is_running and app.state.plan is None

    asyncio.run(run())


def test_when_nothing_in_the_catalog_fits_the_model_step_says_why(cpu_rig: Rig) -> None:
    huge = CatalogModel("too-big", "Too Big", "qwen3-235b-a22b", ["me/huge-GGUF"],
                        [QuantFile("Q4_K_M", ["huge.gguf"], 10**15, "me/huge-GGUF")])

    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            best = await open_best(app, pilot, BestConfigScreen(budget_s=5, tune_options=FAST, catalog=[huge]))
            await wait_for(pilot, lambda: best.outcome is not None, what="the flow")
            assert best.outcome == "failed" and statuses(best)["model"] == "failed"
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the dialog")
            assert "Nothing in the catalog reaches 10 tok/s" in app.screen.title_text
            assert app.screen.rows[0][0] == "Too Big" and app.screen.rows[0][3].startswith("too big")
            assert [k for k, _ in app.screen.choices] == ["local"]  # nothing fits memory: no lower, no anyway
            assert "no catalog model fits this rig" in statuses_detail(best, "model")
            await pilot.press("escape")
            assert app.is_running and app.screen is best

    asyncio.run(run())
