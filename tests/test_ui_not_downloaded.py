"""A catalog model that is not on this machine says so (Models, Home, Plan), and Chat or `moetui run` on it
offers the download instead of failing with "no such model file"; the quant column is the GGUF header's.
Real parts: the fake hub on 127.0.0.1 (tests/hub_server.py), real downloads into a temp HF cache, the tiny
proxy loaded by llama.cpp, the app driven by Pilot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hub_server import fake_hub  # noqa: F401
from ui_pilot import settle, wait_for

from moetui.cli import main as cli_main
from moetui.hardware import Rig, load_preset
from moetui.hub.cache import cached_model_path, needs_download
from moetui.hub.discovery import add_folder
from moetui.hub.download import download_model
from moetui.paths import presets_dir
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.chat import ChatScreen
from moetui.ui.widgets.chat_log import ChatLog
from moetui.ui.widgets.stats_bar import ChatStatsBar
from moetui.ui.widgets.choice_dialog import ChoiceDialog

pytestmark = pytest.mark.anyio
HAVE = "me/tiny-GGUF:Q4_K_M"  # downloaded before the app starts
MISSING = "me/other-GGUF:Q4_K_M"  # on the hub only

CATALOG = """
[[model]]
id = "tiny-moe"
name = "Tiny MoE"
shape = "qwen3-30b-a3b"
repos = ["me/tiny-GGUF"]
  [[model.quant]]
  quant = "Q4_K_M"
  files = ["tiny-moe-Q4_K_M.gguf"]
  size_bytes = {size}

[[model]]
id = "other-moe"
name = "Other MoE"
shape = "qwen3-30b-a3b"
repos = ["me/other-GGUF"]
  [[model.quant]]
  quant = "Q4_K_M"
  files = ["other-moe-Q4_K_M.gguf"]
  size_bytes = {size}
"""


@pytest.fixture
def hub_catalog(fake_hub, tiny_moe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The two catalog models on the fake hub, and a presets folder whose catalog lists only them."""
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    fake_hub.add_file("me/other-GGUF", "other-moe-Q4_K_M.gguf", tiny_moe)
    presets = tmp_path / "presets"
    presets.mkdir()
    for sub in ("rigs", "shapes"):
        (presets / sub).symlink_to(presets_dir() / sub)
    (presets / "models.toml").write_text(CATALOG.format(size=tiny_moe.stat().st_size))
    monkeypatch.setenv("MOETUI_PRESETS", str(presets))
    return fake_hub


async def test_models_says_which_catalog_quants_are_not_downloaded(hub_catalog, tiny_moe: Path,
                                                                   tmp_path: Path) -> None:
    have = download_model(HAVE).path
    folder = tmp_path / "ggufs"
    folder.mkdir()
    shutil.copy(tiny_moe, folder / "mislabeled-Q8_0.gguf")  # the name says Q8_0, the header Q4_K_M
    add_folder(folder)
    app = MoetuiApp(rig=load_preset("rtx4090-ddr5-64"), detect=False, remember=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("m")
        screen = app.screen
        await wait_for(pilot, lambda: "Enter selects" in str(screen.query_one("#models-status").render()),
                       what="the scan")
        await settle(app, pilot)
        table = screen.query_one("#models-table")
        rows = screen.rows
        assert table.get_cell(MISSING, "source") == "↓ me" and rows[MISSING].file is None
        assert table.get_cell(HAVE, "source") == "me" and rows[HAVE].local_path == str(have)
        # the downloaded quant is listed once: its catalog row, not a second "hf-cache" row as well
        assert not [r for r in rows.values() if r.source == "hf-cache"]
        mislabeled = str(folder / "mislabeled-Q8_0.gguf")
        assert table.get_cell(mislabeled, "quant") == "Q4_K_M" and rows[mislabeled].quant_from_header
        assert table.get_cell(HAVE, "quant") == "Q4_K_M" and rows[HAVE].quant_from_header
        assert not rows[MISSING].quant_from_header
        status = str(screen.query_one("#models-status").render())
        assert "↓ 1 not downloaded" in status and "d downloads the highlighted one" in status
        table.move_cursor(row=table.get_row_index(MISSING))
        await pilot.pause()
        highlighted = str(screen.query_one("#models-status").render())
        assert "not downloaded" in highlighted and "quant and size as published" in highlighted
        # Enter on the downloaded catalog quant selects its file: Chat, Tune and Export run that
        table.move_cursor(row=table.get_row_index(HAVE))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.model_path == str(have) and app.state.plan is not None,
                       what="the downloaded quant's plan")


async def models_at(pilot, app: MoetuiApp, ref: str):  # type: ignore[no-untyped-def]
    """Models, scanned, with its table focused on REF's row: (the screen, its table)."""
    await pilot.press("m")
    screen = app.screen
    await wait_for(pilot, lambda: "Enter selects" in str(screen.query_one("#models-status").render()),
                   what="the scan")
    table = screen.query_one("#models-table")
    table.focus()
    table.move_cursor(row=table.get_row_index(ref))
    await pilot.pause()
    return screen, table


async def test_d_on_models_downloads_the_highlighted_quant_and_chat_loads_it(hub_catalog, cpu_rig: Rig,
                                                                             tiny_moe: Path) -> None:
    app = MoetuiApp(rig=cpu_rig, detect=False, remember=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen, table = await models_at(pilot, app, MISSING)
        assert "d downloads it" in str(screen.query_one("#models-status").render())
        await pilot.press("d")  # no dialog: asked and answered
        chat = app.get_screen("chat")
        await wait_for(pilot, lambda: app.screen is chat, what="Chat")
        assert not isinstance(app.screen, ChoiceDialog)
        await wait_for(pilot, lambda: not needs_download(MISSING) and app.state.model_path == str(cached_model_path(MISSING)),
                       timeout=60, what="the download and its selection")
        assert Path(app.state.model_path).read_bytes() == tiny_moe.read_bytes()
        await wait_for(pilot, lambda: chat.loaded_config is not None, timeout=60, what="the downloaded model to load")
        assert chat.loaded_config.model_path == app.state.model_path and chat.downloading is None
        # d on a quant that is here already says so and changes nothing
        await pilot.press("escape", "m")
        await wait_for(pilot, lambda: app.screen is screen, what="Models again")
        await wait_for(pilot, lambda: screen.rows.get(MISSING) is not None and screen.rows[MISSING].file is not None,
                       what="the rescan to see the download")
        table.move_cursor(row=table.get_row_index(MISSING))
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is screen and any("on this machine already" in str(n.message) for n in app._notifications)


async def test_chat_on_a_model_not_downloaded_offers_the_download(hub_catalog, cpu_rig: Rig, tiny_moe: Path,
                                                                  tmp_path: Path) -> None:
    assert needs_download(MISSING)
    app = MoetuiApp(model_path=MISSING, rig=cpu_rig, detect=False, remember=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.plan is not None, what="the plan of the hub model (remote header)")
        assert "not downloaded" in app.screen_text()  # Home says so
        await pilot.press("p")
        await pilot.pause()
        assert "not downloaded" in app.screen_text()
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the download offer")
        assert "is not downloaded" in app.screen_text() and "Download" in app.screen_text()
        chat = app.get_screen("chat")
        assert isinstance(chat, ChatScreen) and "not downloaded" in chat.status_line
        assert "no such model file" not in chat.status_line and chat.model_worker is None
        await pilot.click("#choice-download")
        local = tmp_path / "hf-cache"
        await wait_for(pilot, lambda: app.state.model_path and Path(app.state.model_path).is_relative_to(local),
                       timeout=60, what="the download and the new selection")
        assert Path(app.state.model_path) == cached_model_path(MISSING) and not needs_download(MISSING)
        assert Path(app.state.model_path).read_bytes() == tiny_moe.read_bytes()  # the whole file, really downloaded
        chat.max_tokens = 4
        await wait_for(pilot, lambda: chat.loaded_config is not None, timeout=60, what="the downloaded model to load")
        assert chat.loaded_config.model_path == app.state.model_path
        chat.send("hello")
        await wait_for(pilot, lambda: chat.last_done is not None, timeout=60, what="a reply")
        assert not any(m.role == "error" for m in chat.query_one(ChatLog).messages)
        bar = chat.query_one(ChatStatsBar)
        if not cpu_rig.gpus:  # a CPU-only rig: the stats bar speaks of RAM, not of VRAM
            assert not bar.uses_gpu and "VRAM" not in str(bar.render()) and "RAM" in str(bar.render())


async def test_declining_the_offer_says_how_to_get_it_later(hub_catalog, cpu_rig: Rig) -> None:
    app = MoetuiApp(model_path=MISSING, rig=cpu_rig, detect=False, remember=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the download offer")
        await pilot.press("escape")
        chat = app.get_screen("chat")
        await wait_for(pilot, lambda: app.screen is chat, what="Chat again")
        assert "send a message to be asked again" in chat.status_line and chat.model_worker is None
        assert "Best config" in chat.status_line
        assert needs_download(MISSING) and cached_model_path(MISSING) is None  # nothing was downloaded
        await pilot.press("escape", "t")  # Tune cannot measure a file that is not here: it says so
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TuneScreen", what="Tune")
        app.screen.action_start()
        await pilot.pause()
        assert not app.screen.running
        assert any("is not downloaded" in str(n.message) for n in app._notifications)


def test_run_on_a_model_not_downloaded_says_how_to_download_it(hub_catalog, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["run", MISSING, "-p", "hi", "-n", "2"]) == 2
    err = capsys.readouterr().err
    assert "is not downloaded" in err and f"moetui models download {MISSING}" in err
    assert "no such model file" not in err


def test_models_cli_reads_the_quant_from_the_header(tiny_moe: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    import json

    folder = tmp_path / "ggufs"
    folder.mkdir()
    shutil.copy(tiny_moe, folder / "mislabeled-Q8_0.gguf")  # the name says Q8_0, the header Q4_K_M
    (folder / "broken-Q6_K.gguf").write_bytes(b"GGUF" + b"\0" * 20)  # no header to read: the name's, marked
    add_folder(folder)
    assert cli_main(["models", "--json"]) == 0
    local = {Path(m["path"]).name: m["quant"] for m in json.loads(capsys.readouterr().out)["local"]}
    assert local["mislabeled-Q8_0.gguf"] == "Q4_K_M" and local["broken-Q6_K.gguf"] == "Q6_K"
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mislabeled-Q8_0.gguf"))
    assert "Q4_K_M" in row.split() and "Q8_0" not in row.split()
    broken = next(line for line in out.splitlines() if line.startswith("broken-Q6_K.gguf"))
    assert "Q6_K?" in broken.split() and "from the file name" in out


async def test_d_while_a_download_runs_is_refused_with_a_reason(hub_catalog, cpu_rig: Rig) -> None:
    # the download hangs until the hub closes (both files have the same bytes: the CDN serves one blob)
    hub_catalog.stall_downloads.update({"other-moe-Q4_K_M.gguf": 1 << 16, "tiny-moe-Q4_K_M.gguf": 1 << 16})
    app = MoetuiApp(rig=cpu_rig, detect=False, remember=False)
    async with app.run_test(size=(100, 30)) as pilot:
        models, table = await models_at(pilot, app, MISSING)
        await pilot.press("d")
        chat = app.get_screen("chat")
        await wait_for(pilot, lambda: app.screen is chat and chat.downloading == MISSING, what="the download")
        await pilot.press("tab", "m")  # out of the message box, then Models: the download goes on
        await wait_for(pilot, lambda: app.screen is models, what="Models again")
        table.focus()
        table.move_cursor(row=table.get_row_index(HAVE))
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is models and chat.downloading == MISSING  # nothing else started or opened
        warnings = [n for n in app._notifications if n.title == "A download is running"]
        assert warnings and MISSING in str(warnings[-1].message) and "one at a time" in str(warnings[-1].message)
        assert needs_download(HAVE)
        hub_catalog.release_stalls()  # the connection drops; huggingface_hub's http_get resumes it with a Range
        await wait_for(pilot, lambda: chat.downloading is None, what="the resumed download to end")
        assert not needs_download(MISSING) and needs_download(HAVE)
