"""The whole user flow through the real app, by keys, on this machine: MoetuiApp detects the rig itself,
plans the tiny MoE proxy (Plan shows it), a tiny-budget tune with the real tuner and real llama-cpp-python
workers picks a winner that becomes the active config, Chat loads that config and streams a reply, and
Export shows a llama-server command line for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ui_pilot import wait_for

from moetui.tuner import TuneOptions
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.chat import ChatScreen
from moetui.ui.screens.export import ExportScreen
from moetui.ui.screens.plan import PlanScreen
from moetui.ui.screens.rig import RigScreen
from moetui.ui.screens.tune import TuneScreen
from moetui.ui.widgets.chat_log import ChatLog

SIZE = (80, 24)
# one dimension and at most 2 measured probes: the tune ends in seconds even on a busy 2-core machine
TINY_TUNE = TuneOptions(budget_s=5, n_prompt=64, n_gen=16, reps=3, dimensions=("threads",), max_probes=2)


async def press_text(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


def test_detect_plan_tune_chat_export(tiny_moe: Path) -> None:
    async def run() -> None:
        t_start = time.monotonic()
        app = MoetuiApp(model_path=str(tiny_moe))  # no rig given: the app detects this machine in a worker
        async with app.run_test(size=SIZE) as pilot:
            # 1. the rig is detected, and the Rig screen names it
            await wait_for(pilot, lambda: app.state.rig is not None, timeout=30, what="rig detection")
            rig = app.state.rig
            assert not app.state.detecting and rig.cpu is not None and rig.memory.total_bytes > 0
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, RigScreen), what="the Rig screen")
            await pilot.pause(0.2)
            assert rig.cpu.model.split()[0] in app.screen_text()

            # 2. the model is planned for that rig, and the Plan screen shows the plan
            await wait_for(pilot, lambda: app.state.plan is not None, timeout=30, what="the plan")
            plan = app.state.plan
            assert plan.config.model_path == str(tiny_moe)
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, PlanScreen), what="the Plan screen")
            await pilot.pause(0.2)
            plan_text = app.screen_text()
            assert "tok/s" in plan_text and app.state.plan_error is None

            # 3. Tune with a tiny budget (installed under "tune" so the key opens this one), start by key
            tune = TuneScreen(options=TINY_TUNE)
            app.install_screen(tune, "tune")
            await pilot.press("t")
            await wait_for(pilot, lambda: app.screen is tune, what="the Tune screen")
            await pilot.press("s")
            assert tune.running
            await wait_for(pilot, lambda: not tune.running, timeout=30, what="the tune to finish")
            result = tune.result
            assert result is not None and not result.from_cache, getattr(app, "_notifications", None)
            ok = [p for p in result.probes if p.status == "ok"]
            assert 1 <= len(result.probes) <= 2 and ok and all(p.score and p.score > 0 for p in ok)
            await wait_for(pilot, lambda: app.state.tuned is result, what="TuneCompleted")
            winner = result.best.config
            assert app.state.config == winner and app.state.active_config() == winner
            assert "Best:" in str(tune.query_one("#tune-best").render())

            # 4. Chat loads the winner and streams a reply to a typed message
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the Chat screen")
            chat = app.screen
            chat.max_tokens = 16
            await wait_for(pilot, lambda: chat.loaded_config is not None, timeout=30, what="Chat's model")
            assert chat.loaded_config == winner
            await press_text(pilot, "hello moe")
            await pilot.press("enter")
            await wait_for(pilot, lambda: chat.last_done is not None, timeout=30, what="the reply")
            assert not chat.last_done.cancelled and chat.last_done.stats.tokens == 16
            messages = chat.query_one(ChatLog).messages
            assert [m.role for m in messages[-2:]] == ["user", "assistant"]
            assert messages[-2].text == "hello moe" and messages[-1].text == chat.last_done.text != ""

            # 5. Export shows the llama-server command line for the tuned config
            await pilot.press("escape", "e")  # out of the message box first: letter keys reach the app
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="the Export screen")
            await pilot.pause(0.2)
            command = app.screen.query_one("#export-text").text
            assert command.lstrip().startswith("llama-server") or "llama-server " in command
            assert str(tiny_moe) in command
            assert f"-c {winner.n_ctx}" in command or f"--ctx-size {winner.n_ctx}" in command
        assert time.monotonic() - t_start < 60  # the flow stays quick (13 s on the 2-core dev box)

    asyncio.run(run())
