"""What the Models screen keeps between runs and between scans, on real parts (tiny proxies, the catalog,
the sizing core): files added by hand and the selection are there again after a restart, a file that has
vanished since is shown as missing; fit verdicts are computed once per file, rig and planner inputs."""

from __future__ import annotations

import json
import os
import re
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
    assert app.state.model_error and "no longer there" in app.state.model_error and "gone.gguf" in app.state.model_error
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
    assert app.state.model_path is None and "no longer there" in (app.state.model_error or "")
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


# ---- fit verdicts: judged once per file, rig and planner inputs ------------------------------------
@pytest.mark.anyio
async def test_rescan_and_add_judge_only_new_rows(tiny_moe: Path, tmp_path: Path) -> None:
    from moetui.hub.discovery import add_folder
    from moetui.ui.model_rows import VERDICTS

    folder = tmp_path / "ggufs"
    folder.mkdir()
    one, two = folder / "one-Q4_K_M.gguf", tmp_path / "two-Q4_K_M.gguf"
    shutil.copy(tiny_moe, one)
    shutil.copy(tiny_moe, two)
    add_folder(folder)
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"), remember=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: _scanned(app), what="the first scan", timeout=90)
        screen = app.screen
        table = screen.query_one("#models-table")
        first = {k: tuple(table.get_cell(k, c) for c in ("moe", "fit", "tps")) for k in screen.rows}
        assert first[str(one)][1] == "all in VRAM"
        n = VERDICTS.computed

        await pilot.press("s")  # Rescan: the same files, the same rig: nothing judged again
        await settle(app, pilot)
        await wait_for(pilot, lambda: _scanned(app), what="the rescan", timeout=90)
        await settle(app, pilot)
        assert VERDICTS.computed == n
        again = {k: tuple(table.get_cell(k, c) for c in ("moe", "fit", "tps")) for k in screen.rows}
        assert again == first and all(screen.rows[k].info is not None for k in (str(one), str(tiny_moe)))

        os.utime(one, ns=(one.stat().st_atime_ns, one.stat().st_mtime_ns + 10**9))  # the file changed
        await pilot.press("s")
        await settle(app, pilot)
        await wait_for(pilot, lambda: _scanned(app), what="the rescan after a change", timeout=90)
        await settle(app, pilot)
        assert VERDICTS.computed == n + 1  # only that file

        await pilot.click("#models-path")
        await pilot.press(*str(two), "enter")  # Add: one new row, judged on its own
        await wait_for(pilot, lambda: table.get_cell(str(two), "fit") == "all in VRAM" if str(two) in table.rows
                       else False, what="the added row's verdict")
        await settle(app, pilot)
        assert VERDICTS.computed == n + 2
        # the summary counts the rows in the table, the added one too ("21 models" over 22 rows was stale)
        # (the highlighted added row shows its verdict in words now; the summary, shown again, counts it)
        screen._status_done()
        await pilot.pause()
        status = str(screen.query_one("#models-status").render())
        # (catalog quants not downloaded are counted apart: "(↓ N not downloaded)")
        assert re.match(rf"{len(table.rows)} models( \(↓ \d+ not downloaded\))? — Enter selects", status), status
        assert len(table.rows) == len(first) + 1

    # another rig: every row judged for it
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx3060-ddr4-32"), remember=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        before = VERDICTS.computed
        await pilot.press("m")
        await wait_for(pilot, lambda: _scanned(app), what="the scan on another rig", timeout=90)
        assert VERDICTS.computed - before == len(app.screen.rows) - sum(r.missing for r in app.screen.rows.values())


def test_a_catalog_quants_verdict_is_kept_apart_once_it_is_downloaded(tiny_moe: Path, tmp_path: Path) -> None:
    """Not downloaded, a catalog quant is judged from its shape preset; downloaded, from its file's header:
    the two verdicts must not stand in for each other, and an edited file is judged again."""
    from moetui.ui.model_rows import ModelRow, VerdictCache

    rig_id = "rig"
    ref = "me/tiny-GGUF:Q4_K_M"
    tiny_moe = Path(shutil.copy(tiny_moe, tmp_path / tiny_moe.name))  # its mtime changes below
    remote = ModelRow(ref, "tiny", "Q4_K_M", 1 << 30, "me", shape="qwen3-30b-a3b", catalog=True)
    local = ModelRow(ref, "tiny", "Q4_K_M", 1 << 30, "me", shape="qwen3-30b-a3b", catalog=True,
                     local_path=str(tiny_moe))
    assert remote.file is None and local.file == str(tiny_moe)
    k_remote, k_local = VerdictCache.key(remote, rig_id), VerdictCache.key(local, rig_id)
    assert k_remote is not None and k_local is not None and k_remote != k_local
    os.utime(tiny_moe, ns=(tiny_moe.stat().st_atime_ns, tiny_moe.stat().st_mtime_ns + 10**9))
    assert VerdictCache.key(local, rig_id) != k_local
