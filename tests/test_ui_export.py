"""Export screen: the chosen config as llama.cpp command lines / a Python snippet / a config file; copy and
save. The saved snippet is run for real on the tiny proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ui_pilot import wait_for

from moetui.config import RunConfig
from moetui.export.commandline import export_command
from moetui.hardware import load_preset
from moetui.ui.app import MoetuiApp
from moetui.ui.state import ConfigChosen

from conftest import repack_ok

pytestmark = pytest.mark.anyio


async def open_export(app: MoetuiApp, pilot) -> None:
    await wait_for(pilot, lambda: app.state.plan is not None)
    await pilot.press("e")
    await wait_for(pilot, lambda: getattr(app.screen, "text", ""))


async def choose(app: MoetuiApp, pilot, tool: str) -> str:
    before = app.screen.text
    app.screen.query_one("#export-tool").value = tool
    await wait_for(pilot, lambda: app.screen.text and app.screen.text != before)
    return app.screen.text


async def test_export_shows_the_planned_server_command(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_export(app, pilot)
        cfg = app.state.plan.config
        assert app.screen.text == export_command(cfg, "server").render("posix") + "\n"
        assert "-ngl all" in app.screen.text and str(tiny_moe) in app.screen.text
        assert "the planned config" in app.screen_text()
        app.screen.query_one("#export-shell").value = "powershell"
        ps = export_command(cfg, "server").render("powershell") + "\n"
        await wait_for(pilot, lambda: Path(app.screen.query_one("#export-path").value).suffix == ".ps1")
        await wait_for(pilot, lambda: app.screen.text == ps)


async def test_export_follows_a_chosen_config_and_every_tool(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_export(app, pilot)
        chosen = RunConfig(model_path=str(tiny_moe), n_ctx=1024, n_gpu_layers=0, cache_type_k="q8_0",
                           cache_type_v="q8_0", flash_attn="on")
        app.post_message(ConfigChosen(chosen))
        await wait_for(pilot, lambda: "-c 1024" in app.screen.text)
        assert "the chosen config" in app.screen_text()
        assert "-ctk q8_0" in app.screen.text
        bench = await choose(app, pilot, "bench")
        assert bench.splitlines()[-1].split()[0].endswith("llama-bench")
        cfg_text = await choose(app, pilot, "config")
        assert RunConfig.from_dict(json.loads(cfg_text)) == chosen
        py = await choose(app, pilot, "python")
        assert "llama_cpp.Llama(" in py and "n_ctx=1024" in py


async def test_save_writes_the_file_and_copy_uses_the_clipboard(tiny_moe: Path, tmp_path: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_export(app, pilot)
        app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=512, n_gpu_layers=0, repack=repack_ok())))
        await wait_for(pilot, lambda: "-c 512" in app.screen.text)
        py = await choose(app, pilot, "python")
        # the default path is in the user's data dir (isolated per test), named after the model
        default = Path(app.screen.query_one("#export-path").value)
        assert default.parent == Path(os.environ["MOETUI_DATA_DIR"]) / "exports" and default.suffix == ".py"
        target = tmp_path / "out" / "run_tiny.py"
        app.screen.query_one("#export-path").value = str(target)
        await pilot.click("#export-save")
        await pilot.pause()
        assert target.read_text() == py
        await pilot.click("#export-copy")
        await pilot.pause()
        assert app.clipboard == py

        app.screen.query_one("#export-path").value = str(tmp_path)  # a folder: refused with a message
        await pilot.click("#export-save")
        await pilot.pause()
        assert any("is a folder" in str(n.message) for n in app._notifications)

    # the saved snippet really runs llama-cpp-python on the proxy and generates
    r = subprocess.run([sys.executable, str(target)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip()


async def test_export_without_a_model_says_what_to_do() -> None:
    app = MoetuiApp(rig=load_preset("rtx4090-ddr5-64"), detect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e")
        await pilot.pause()
        assert "No config yet" in app.screen_text()
        await pilot.click("#export-save")
        await pilot.pause()
        assert any("nothing to save" in str(n.message) for n in app._notifications)


@pytest.mark.anyio
async def test_a_saved_server_line_is_a_script_that_runs(tiny_moe: Path, tmp_path: Path) -> None:
    """A saved .sh carries a shebang and is executable: ./file.sh runs it (here with a stand-in binary
    that prints its arguments, so the test checks the script, not llama-server)."""
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_export(app, pilot)
        app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=512, n_gpu_layers=0, repack=repack_ok())))
        await wait_for(pilot, lambda: "-c 512" in app.screen.text)
        target = tmp_path / "serve.sh"
        app.screen.query_one("#export-path").value = str(target)
        await pilot.click("#export-save")
        await pilot.pause()
    text = target.read_text()
    assert text.startswith("#!/bin/sh\n") and os.access(target, os.X_OK)
    fake = tmp_path / "bin"
    fake.mkdir()
    command = next(ln for ln in text.splitlines()[1:] if ln.strip() and not ln.lstrip().startswith("#"))
    first = command.split()[0]  # the binary the line names
    stand_in = fake / Path(first).name
    stand_in.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stand_in.chmod(0o755)
    script = text.replace(first, str(stand_in), 1) if "/" in first else text
    target.write_text(script)
    r = subprocess.run([str(target)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert str(tiny_moe) in r.stdout.splitlines() and "512" in r.stdout.splitlines()
