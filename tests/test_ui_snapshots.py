"""Snapshot tests of the UI-core screens at 80x24 (and the plan in the light theme), on reference rigs and
shape presets so every picture is deterministic. Update with `pytest tests/test_ui_snapshots.py --snapshot-update`
after checking the new SVGs by eye."""

from __future__ import annotations

from pathlib import Path

import pytest

from moetui.hardware import load_preset
from moetui.ui.app import MoetuiApp
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


def make_app(light: bool = False) -> MoetuiApp:
    return MoetuiApp(model_path=MODEL, rig=load_preset("rtx4090-ddr5-64"), light=light)


def settle_then(*keys: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        for key in keys:
            await pilot.press(key)
            for _ in range(3):
                await app.workers.wait_for_complete()
                await pilot.pause()
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
