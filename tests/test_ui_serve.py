"""The Serve screen through Pilot: it starts the real llama-server on the tiny proxy, shows the URL and the
snippet, shows a request the openai client made in its table, and stops the server (and on app exit)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import psutil
import pytest
from ui_pilot import wait_for

from moetui.config import RunConfig
from moetui.export.llama_tools import ensure_llama_tools
from moetui.export.serving import ServeOptions
from moetui.hardware import Rig
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.serve import ServeScreen
from moetui.ui.state import ConfigChosen

from conftest import repack_ok

pytestmark = pytest.mark.slow


def test_the_serve_screen_serves_and_shows_the_request(tiny_moe: Path, cpu_rig: Rig, tmp_path: Path) -> None:
    binary = ensure_llama_tools(["llama-server"]) / "llama-server"

    async def run() -> int:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False, remember=False)
        app.install_screen(ServeScreen(options=ServeOptions(binary=str(binary), log_path=tmp_path / "s.log")), "serve")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
            app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=512, n_threads=2, repack=repack_ok())))
            await pilot.press("v")
            await wait_for(pilot, lambda: isinstance(app.screen, ServeScreen), what="Serve")
            serve: ServeScreen = app.screen  # type: ignore[assignment]
            await pilot.press("s")
            await wait_for(pilot, lambda: serve.endpoint is not None, what="the server", timeout=120)
            ep = serve.endpoint
            assert ep is not None and ep.openai_url in serve.status_line
            await wait_for(pilot, lambda: "OpenAI(base_url=" in app.screen_text(), what="the snippet on screen")
            client = openai.OpenAI(base_url=ep.openai_url, api_key="none", max_retries=0)
            await asyncio.to_thread(client.chat.completions.create, model=ep.model, max_tokens=8,
                                    messages=[{"role": "user", "content": "hello"}])
            st = lambda: serve.last_stats  # noqa: E731
            await wait_for(pilot, lambda: st() is not None and st().tokens_predicted >= 1  # type: ignore[union-attr]
                           and any(r.state == "done" and (r.n_decoded or 0) >= 1 for r in st().requests),  # type: ignore[union-attr]
                           what="the request served")
            await wait_for(pilot, lambda: " done " in app.screen_text(), what="the request in the table")
            pid = ep.pid
            await pilot.press("x")
            await wait_for(pilot, lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                           what="the server to stop", timeout=60)
            await wait_for(pilot, lambda: "Stopped" in serve.status_line, what="the stopped line")
            await pilot.press("s")  # again, then leave the app with it running: it must not outlive the app
            await wait_for(pilot, lambda: serve.endpoint is not None, what="the server again", timeout=120)
            return serve.endpoint.pid  # type: ignore[union-attr]

    pid = asyncio.run(run())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
