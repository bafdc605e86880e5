"""Snapshot tests of every screen at 80x24 (and the plan in the light theme), on reference rigs and
shape presets so every picture is deterministic; Chat, Tune and Best config in their idle states (no model
process, no tuner run). Update with `pytest tests/test_ui_snapshots.py --snapshot-update`
after checking the new SVGs by eye."""

from __future__ import annotations

from pathlib import Path

import pytest

from moetui.hardware import load_preset
from textual.screen import Screen

from moetui.hub import discovery
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.best import BestConfigScreen
from moetui.ui.screens.rig import RigScreen

MODEL = "qwen3-30b-a3b:Q8_0"  # hybrid on a 24 GB card: the placement drawing shows both sides
FIXED_DATA = Path("/tmp/moetui-snapshot-data")  # the export path is on screen: keep it the same every run


@pytest.fixture(autouse=True)
def _deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOETUI_DATA_DIR", str(FIXED_DATA))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # no local models from this machine
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setattr(RigScreen, "LIVE", False)  # live gauges change every sample
    # the optional real model (moetui[real]) is listed where it is installed: this machine's, not the picture's
    monkeypatch.setattr(discovery, "pip_models", lambda: [])


def make_app(light: bool = False, model: str | None = MODEL) -> MoetuiApp:
    return MoetuiApp(model_path=model, rig=load_preset("rtx4090-ddr5-64"), light=light)


async def settle(app: MoetuiApp, pilot) -> None:  # type: ignore[no-untyped-def]
    """Let workers finish and report; Chat's 2 Hz sampler runs until the screen closes, so not that one."""
    for _ in range(3):
        finite = [w for w in app.workers if w.group != "chat-sampler"]
        if finite:  # an empty list would mean "all of them" to Textual
            await app.workers.wait_for_complete(finite)
        await pilot.pause()


def settle_then(*keys: str, screens: dict[str, Screen] | None = None):
    """run_before: let detection/inspection/planning land, then press `keys`. `screens` replaces the
    app's screen for a name (as MoetuiApp.screen_named would build it) before any key is pressed."""
    async def run_before(pilot) -> None:
        app = pilot.app
        for name, screen in (screens or {}).items():
            app.install_screen(screen, name)
        await settle(app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(app, pilot)
        await pilot.pause(0.2)

    return run_before


def test_home(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle_then())


def test_rig(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle_then("r"))


def test_models(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle_then("m"))


def test_plan(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle_then("p"))


def test_plan_light_theme_wide(snap_compare) -> None:
    assert snap_compare(make_app(light=True), terminal_size=(120, 40), run_before=settle_then("p"))


def test_export(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle_then("e"))


def test_chat_idle_without_a_model(snap_compare) -> None:
    # no model selected: Chat starts no model process (a shape preset's plan would try to load a file
    # that does not exist), so the picture is its deterministic "pick a model" state
    assert snap_compare(make_app(model=None), terminal_size=(80, 24), run_before=settle_then("c"))


def test_tune_idle(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle_then("t"))


def test_best_config_idle(snap_compare) -> None:
    best = BestConfigScreen(autostart=False)  # shown, not started: no download, plan or tune runs
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle_then("b", screens={"best": best}))


# ---- the light theme too: tests/test_ui_contrast.py reads every snapshot for text under 4.5:1 ------------
def test_home_light_theme(snap_compare) -> None:
    assert snap_compare(make_app(light=True), terminal_size=(80, 24), run_before=settle_then())


def test_models_light_theme(snap_compare) -> None:
    assert snap_compare(make_app(light=True), terminal_size=(80, 24), run_before=settle_then("m"))


def test_tune_idle_light_theme(snap_compare) -> None:
    assert snap_compare(make_app(light=True), terminal_size=(80, 24), run_before=settle_then("t"))


def _with_transcript(light: bool):  # type: ignore[no-untyped-def]
    """Chat with a conversation written into its log (no model process): the colours of every role."""
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle_then("c")(pilot)
        from moetui.ui.widgets.chat_log import ChatLog

        pilot.app.screen.query_one("#chat-input").cursor_blink = False  # a blinking cursor is not deterministic
        log = pilot.app.screen.query_one(ChatLog)
        log.add_message("user", "Tell me a story about a lighthouse keeper.")
        log.add_message("assistant", "The keeper climbed the stairs at dusk, as every night, and lit the lamp.")
        log.add_message("info", "(waiting for the model to load)")
        log.add_message("error", "the model worker stopped")
        await pilot.pause(0.2)

    return run_before


def test_chat_transcript(snap_compare) -> None:
    assert snap_compare(make_app(model=None), terminal_size=(80, 24), run_before=_with_transcript(False))


def test_chat_transcript_light_theme(snap_compare) -> None:
    assert snap_compare(make_app(model=None, light=True), terminal_size=(80, 24), run_before=_with_transcript(True))
