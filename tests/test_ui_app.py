"""The app shell: home first, keys and command palette, lazy screens, workers, errors that leave the app up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ui_pilot import settle

from moetui.config import RunConfig
from moetui.hardware import load_preset
from moetui.ui import app as app_module
from moetui.ui.app import MoetuiApp
from moetui.ui.state import AppState, ConfigChosen, ModelSelected

RIG = "rtx4090-ddr5-64"
pytestmark = pytest.mark.anyio  # async tests run on anyio's pytest plugin (asyncio backend)


def test_state_contract_defaults() -> None:
    s = AppState()
    assert s.active_config() is None
    cfg = RunConfig(model_path="x.gguf")
    s.config = cfg
    assert s.active_config() is cfg


async def test_home_is_first_and_shows_rig_model_and_plan(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HomeScreen"
        assert app.state.model_info is not None and app.state.model_info.n_expert == 8
        assert app.state.plan is not None and app.state.plan.mode == "all_gpu"
        text = app.screen_text()
        assert "Best config for my rig" in text
        assert "RTX 4090" in text
        assert "qwen3moe, 4 layers, 8 experts, 2 active" in text
        assert "predicted" in text and "tok/s decode" in text


async def test_keys_switch_between_core_screens(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for key, name in (("r", "RigScreen"), ("p", "PlanScreen"), ("e", "ExportScreen"), ("h", "HomeScreen"),
                          ("m", "ModelsScreen"), ("h", "HomeScreen")):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == name, key
        # screens are installed once and kept: coming back finds the same instance
        assert app.screen_named("plan") is app.screen_named("plan")


async def test_command_palette_opens_screens(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"open plan")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "PlanScreen"


async def test_palette_lists_every_screen() -> None:
    app = MoetuiApp(rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        provider = app_module.MoetuiCommands(app.screen)
        titles = [h.text for h in [hit async for hit in provider.discover()]]
        for name, (_, _, _, title, _) in app_module.SCREENS_BY_NAME.items():
            assert any(title in str(t) for t in titles), title
        await pilot.pause()


async def test_a_screen_that_fails_to_import_only_notifies(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dict(app_module.SCREENS_BY_NAME)
    broken["tune"] = ("moetui.ui.screens.no_such_module", "TuneScreen", "t", "Tune", "")
    monkeypatch.setattr(app_module, "SCREENS_BY_NAME", broken)
    app = MoetuiApp(rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await pilot.pause()
        assert type(app.screen).__name__ == "HomeScreen"
        assert any("Tune is not available" in str(n.message) for n in app._notifications)
        await pilot.press("r")
        await pilot.pause()
        assert type(app.screen).__name__ == "RigScreen"


async def test_truncated_gguf_is_reported_and_app_stays_up(tiny_moe: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(tiny_moe.read_bytes()[:4096])
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        good = app.state.model_info
        app.post_message(ModelSelected(str(bad)))
        await settle(app, pilot)
        assert app.state.model_error and "truncated.gguf" in app.state.model_error
        assert any(n.severity == "error" for n in app._notifications)
        assert app.state.model_info is good  # the previous selection's info is kept
        assert "✗" in app.screen_text()  # the Home model card says why (the toast says it too)
        await pilot.press("p")
        await pilot.pause()
        assert type(app.screen).__name__ == "PlanScreen"


async def test_rig_is_detected_in_a_worker(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe))
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.state.rig is None or app.state.detecting is False
        await settle(app, pilot, 4)
        assert app.state.rig is not None and app.state.rig.source == "detected"
        assert app.state.plan is not None  # planned once both rig and model were known
        assert app.state.rig.cpu.model.split()[0] in app.screen_text()


async def test_config_chosen_becomes_the_active_config(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        cfg = RunConfig(model_path=str(tiny_moe), n_ctx=1024)
        app.post_message(ConfigChosen(cfg))
        await pilot.pause()
        assert app.state.active_config() is cfg
        assert "chosen config in use" in app.screen_text()


async def test_light_and_dark_themes(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), light=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert not app.current_theme.dark
        app.action_toggle_theme()
        await pilot.pause()
        assert app.current_theme.dark
        assert "Best config for my rig" in app.screen_text()


def test_tui_command_rejects_an_unknown_rig_in_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "moetui", "tui", "--rig", "no-such-rig"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no reference rig named 'no-such-rig'" in r.stderr
    assert "Traceback" not in r.stderr


def _saved_tune(model_path: str, rig, identity: str, n_ctx: int = 2048):
    """A tuning profile as the tuner stores it (real ProfileStore file), for this rig and model."""
    from moetui.hardware.fingerprint import fingerprint
    from moetui.runtime.bench import BenchResult
    from moetui.tuner import Probe, ProfileStore, TuneResult
    from moetui.hardware.llama_build import llama_version

    best = Probe(0, RunConfig(model_path="/moved/elsewhere.gguf", n_ctx=n_ctx, n_ubatch=256), {"n_ubatch": 256},
                 "ub 256", status="ok", score=50.0, bench=BenchResult(64, 16, 3, [500.0] * 3, [50.0] * 3))
    result = TuneResult(best=best, baseline=best, plan_probe=best, predicted={"decode_tps": 40.0, "prompt_tps": 400.0},
                        probes=[best], rig_fingerprint=rig.fingerprint or fingerprint(rig), model_id=identity,
                        llama_version=llama_version(rig), objective="decode", elapsed_s=1.0, stopped="converged",
                        model_path=model_path)
    ProfileStore().put(result)
    return result


async def test_a_saved_tuning_profile_becomes_the_active_config(tiny_moe: Path) -> None:
    from moetui.model.inspect import inspect_file

    rig = load_preset(RIG)
    _saved_tune(str(tiny_moe), rig, inspect_file(tiny_moe).identity)
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot, 4)
        assert app.state.tuned is not None
        cfg = app.state.active_config()
        assert cfg is app.state.config and cfg.n_ctx == 2048 and cfg.n_ubatch == 256
        assert cfg.model_path == str(tiny_moe)  # the profile follows the model, wherever it is now
        assert "tuned config in use" in app.screen_text()
        # another rig: the profile is not for it, the plan is the config again
        app.post_message(app_module.RigChanged(load_preset("rtx3060-ddr4-32")))
        await settle(app, pilot)
        assert app.state.tuned is None and app.state.active_config() is app.state.plan.config
