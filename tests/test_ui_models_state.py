"""What the Models screen keeps between runs and between scans, on real parts (tiny proxies, the catalog,
the sizing core): files added by hand and the selection are there again after a restart, a file that has
vanished since is shown as missing; fit verdicts are computed once per file, rig and planner inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ui_pilot import settle, wait_for

from moetui.hardware import load_preset
from moetui.paths import data_dir
from moetui.hub.discovery import add_file, discover_local, list_files, remove_file
from moetui.ui.app import MoetuiApp, start_app
from moetui.ui.selection import remember_model, remembered_missing, remembered_model


def _scanned(app: MoetuiApp) -> bool:
    return "Enter selects" in app.screen_text()


def test_added_files_persist_atomically_and_a_vanished_one_is_missing(tiny_moe: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine-Q4_K_M.gguf"
    shutil.copy(tiny_moe, mine)
    assert add_file(mine) == mine.resolve()
    assert add_file(str(mine)) == mine.resolve()  # kept once
    saved = data_dir() / "added_files.json"
    assert json.loads(saved.read_text()) == {"files": [str(mine.resolve())]}
    assert not [p for p in data_dir().iterdir() if p.name.endswith(".tmp")]
    found = [m for m in discover_local(["added"])]
    assert [(m.source, m.name, m.missing, m.size_bytes) for m in found] == [
        ("added", mine.name, False, mine.stat().st_size)]
    mine.unlink()
    found = discover_local(["added"])
    assert [(m.name, m.missing) for m in found] == [(mine.name, True)]  # listed as missing, no error
    assert list_files() == [mine.resolve()]
    assert remove_file(mine) and not remove_file(mine) and discover_local(["added"]) == []
    saved.write_text("{broken")
    assert list_files() == []  # a damaged list only costs the memory of what was added


def test_a_vanished_selection_opens_on_nothing_and_says_so(tmp_path: Path) -> None:
    model = tmp_path / "gone.gguf"
    model.write_bytes(b"GGUF")
    remember_model(str(model))
    assert start_app().state.model_path == str(model.resolve())
    model.unlink()
    assert remembered_model() is None and remembered_missing() == str(model.resolve())
    app = start_app()
    assert app.state.model_path is None
    assert app.model_error and "no longer there" in app.model_error and "gone.gguf" in app.model_error
    remember_model("qwen3-30b-a3b:Q4_K_M")  # not a file: never "missing"
    assert remembered_missing() is None


@pytest.mark.anyio
async def test_an_added_file_is_listed_after_a_restart_and_missing_once_deleted(tiny_moe: Path,
                                                                               tmp_path: Path) -> None:
    mine = tmp_path / "added-by-hand-Q4_K_M.gguf"
    shutil.copy(tiny_moe, mine)
    rig = load_preset("rtx4090-ddr5-64")
    app = MoetuiApp(rig=rig)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("m")
        await wait_for(pilot, lambda: _scanned(app), what="the Models scan", timeout=90)
        await pilot.click("#models-path")
        await pilot.press(*str(mine), "enter")
        await wait_for(pilot, lambda: app.state.model_path == str(mine) and app.state.model_info is not None,
                       what="the added file selected")
        await settle(app, pilot)
    assert list_files() == [mine.resolve()]
    assert remembered_model() == str(mine.resolve())

    # restart on another model (not remembered, so the added one stays the remembered selection): the
    # added file is still listed, as "added"
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig, remember=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: _scanned(app), what="the Models scan", timeout=90)
        row = app.screen.rows[str(mine.resolve())]
        assert row.source == "added" and not row.missing
        table = app.screen.query_one("#models-table")
        await wait_for(pilot, lambda: table.get_cell(str(mine.resolve()), "fit") == "all in VRAM",
                       what="the added file's verdict")

    # deleted since: a "missing" row, and picking it says so instead of failing
    mine.unlink()
    app = start_app(rig=rig)
    assert app.state.model_path is None and "no longer there" in (app.model_error or "")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert "no longer there" in app.screen_text()  # Home says why nothing is selected
        await pilot.press("m")
        await wait_for(pilot, lambda: _scanned(app), what="the Models scan", timeout=90)
        key = str(mine.resolve())
        row = app.screen.rows[key]
        table = app.screen.query_one("#models-table")
        assert row.missing and table.get_cell(key, "fit") == "missing" and table.get_cell(key, "size") == "-"
        table.focus()
        table.move_cursor(row=table.get_row_index(key))
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.state.model_path is None and app.is_running
        assert any("no longer there" in str(n.message) for n in app._notifications)
