"""Every action is on a key (shown in the footer) and in the command palette: the real app, driven by Pilot."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.binding import Binding
from ui_pilot import settle, wait_for

from moetui.config import RunConfig
from moetui.hardware import load_preset
from moetui.ui.app import SCREENS_BY_NAME, MoetuiApp
from moetui.ui.commands import MoetuiCommands
from moetui.ui.keys import APP_ACTIONS, SHOWN_ON
from moetui.ui.screens.best import BestConfigScreen
from moetui.ui.state import ConfigChosen

RIG = "rtx4090-ddr5-64"
pytestmark = pytest.mark.anyio

# the screen actions the issue names, as the palette titles them
EXPECTED = {
    "tune": ["Tune: Start", "Tune: Cancel tuning"],
    "chat": ["Chat: Stop", "Chat: New", "Chat: System", "Chat: Reload"],
    "best": ["Best config: Go", "Best config: Cancel"],
    "export": ["Export: Copy", "Export: Save"],
    "models": ["Models: Add path", "Models: Rescan"],
}


def idle_app(**kw) -> MoetuiApp:  # type: ignore[no-untyped-def]
    """No model, a reference rig, and a Best config screen that does not start by itself when shown (the
    one-click flow would pick and download a catalog model)."""
    app = MoetuiApp(rig=load_preset(RIG), detect=False, **kw)
    best = BestConfigScreen(autostart=False)
    app.install_screen(best, "best")
    return app


async def palette_titles(app: MoetuiApp) -> dict[str, str]:
    provider = MoetuiCommands(app.screen)
    return {str(hit.text): hit.help or "" async for hit in provider.discover()}


async def test_the_palette_lists_each_screens_actions_with_their_keys() -> None:
    app = idle_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for name in SCREENS_BY_NAME:
            await pilot.press("escape", SCREENS_BY_NAME[name][2])  # Esc: out of Chat's message box first
            await wait_for(pilot, lambda: app.screen is app.screen_named(name), what=f"the {name} screen")
            titles = await palette_titles(app)
            # the app-wide commands are there on every screen, each with its key
            for key, _, _, title, _ in APP_ACTIONS:
                assert titles.get(title, "").startswith(f"[{app.get_key_display(Binding(key, ''))}]"), (name, title)
            for _, (_, _, key, title, _) in SCREENS_BY_NAME.items():
                assert any(title in t and help.startswith(f"[{key}]") for t, help in titles.items()), title
            for title in EXPECTED.get(name, []):
                assert title in titles, (name, title, sorted(titles))
            # and every key the screen itself binds has its entry (the palette is built from the bindings)
            screen = app.screen
            for _, b in screen._bindings:
                if b.show and b.description and not b.action.startswith("app."):
                    entry = f"{app.screen_title(screen)}: {b.description}"
                    assert titles[entry].startswith(f"[{app.get_key_display(b)}]"), entry
        # a screen's actions are offered on that screen only
        await pilot.press("h")
        await pilot.pause()
        assert not any(t.startswith("Export:") for t in await palette_titles(app))


async def test_footers_show_the_screen_keys_and_the_app_keys_where_they_matter() -> None:
    app = idle_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for name, shown in (("home", ["R Re-detect", "P Re-plan", "^t Theme", "screens", "q Quit"]),
                            ("rig", ["R Re-detect"]), ("plan", ["P Re-plan"]),
                            ("models", ["a Add path", "s Rescan"]), ("export", ["y Copy", "s Save"]),
                            ("tune", ["s Start"]), ("best", ["g Go", "esc Cancel"])):
            await pilot.press(SCREENS_BY_NAME[name][2])
            await wait_for(pilot, lambda: app.screen is app.screen_named(name), what=f"the {name} screen")
            # drawn: a busy machine takes more than a fixed pause to lay a new screen out
            await wait_for(pilot, lambda: "^p palette" in app.screen_text().splitlines()[-1], what=f"{name}'s footer")
            footer = app.screen_text().splitlines()[-1]
            for label in shown:
                assert label in footer, (name, label, footer)
            assert "^p palette" in footer  # nothing pushed the palette key off the 80 columns
        for action, screens in SHOWN_ON.items():
            assert screens, action


async def test_export_saves_and_copies_by_key_and_from_the_palette(tiny_moe: Path, tmp_path: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
        app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=512, n_gpu_layers=0)))
        await pilot.press("e")
        await wait_for(pilot, lambda: "-c 512" in getattr(app.screen, "text", ""), what="the export text")
        export = app.screen
        target = tmp_path / "by-key" / "serve.sh"
        export.query_one("#export-path").value = str(target)
        assert app.focused is not None and app.focused.id == "export-tool"  # not a text box: keys reach the screen
        await pilot.press("s")
        await wait_for(pilot, target.exists, what="the file saved by the s key")
        assert target.read_text() == "#!/bin/sh\n" + export.text  # a saved .sh runs as ./serve.sh
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == export.text

        # the same action from the command palette, typed as a user would
        again = tmp_path / "from-palette.sh"
        export.query_one("#export-path").value = str(again)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"export: save")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, again.exists, what="the file saved from the palette")
        assert again.read_text() == "#!/bin/sh\n" + export.text
        assert app.screen is export


async def test_app_actions_have_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    app = idle_app(light=True)
    calls: list[str] = []
    monkeypatch.setattr(app, "detect", lambda: calls.append("detect"))
    monkeypatch.setattr(app, "request_plan", lambda *a, **k: calls.append("plan"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.current_theme.dark
        await pilot.press("R")
        await pilot.press("P")
        await pilot.pause()
        assert calls == ["detect", "plan"]
        await pilot.press("t")  # the keys are app-wide: they work where the footer does not show them
        await pilot.pause()
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert not app.current_theme.dark


async def test_palette_runs_a_screen_action_on_tune() -> None:
    app = idle_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"tune: start")
        await pilot.pause(0.5)
        await pilot.press("enter")
        # no model selected: the Start action answers with its warning, as the s key does
        await wait_for(pilot, lambda: any("Select a local model first" in str(n.message)
                                          for n in app._notifications), what="Tune's start warning")


# ---- keys never trap: Esc leaves a text box, Enter submits, the footer shows the way out -------------
def footer_line(app: MoetuiApp) -> str:
    return app.screen_text().splitlines()[-1]


async def test_models_add_gives_the_keys_back_and_a_typed_path_goes_to_the_box(tiny_moe: Path) -> None:
    app = idle_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("m")
        await wait_for(pilot, lambda: app.screen is app.screen_named("models"), what="the models screen")
        models = app.screen
        box = models.query_one("#models-path")
        # unfocused, a path's first character sends the whole path to the box, not to the screen keys
        assert app.focused is not box
        await pilot.press(*str(tiny_moe))
        await pilot.pause()
        assert box.value == str(tiny_moe)
        assert app.screen is models  # "t" (Tune), "m", "p" ... in the path fired nothing
        await pilot.pause(0.1)
        assert "esc Leave field" in footer_line(app)  # the way out is on screen while typing
        await pilot.press("enter")  # Enter submits: the file is added and selected
        await wait_for(pilot, lambda: app.state.model_path == str(tiny_moe), what="the added model selected")
        assert app.focused is not box and box.value == ""  # focus back on the screen after the action
        await pilot.pause(0.1)
        assert "a Add path" in footer_line(app) and "Leave field" not in footer_line(app)
        await pilot.press("h")
        await wait_for(pilot, lambda: app.screen is app.screen_named("home"), what="h reaching the app")


async def test_esc_leaves_any_text_box_and_the_letter_keys_work_again() -> None:
    app = idle_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("m")
        await wait_for(pilot, lambda: app.screen is app.screen_named("models"), what="the models screen")
        box = app.screen.query_one("#models-path")
        box.focus()
        await pilot.press("h")
        assert box.value == "h"  # in a box, letters are text
        await pilot.press("escape", "h")
        await wait_for(pilot, lambda: app.screen is app.screen_named("home"), what="h after Esc")
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen is app.screen_named("tune"), what="the tune screen")
        budget = app.screen.query_one("#tune-budget")
        budget.focus()
        await pilot.pause(0.1)
        assert "esc Leave field" in footer_line(app)
        await pilot.press("escape")
        assert app.focused is not budget
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen is app.screen_named("plan"), what="p after Esc on Tune")


async def test_enter_in_the_tune_budget_starts_and_q_is_never_swallowed_mid_tune(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.model_info is not None, what="the model")
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen is app.screen_named("tune"), what="the tune screen")
        tune = app.screen
        budget = tune.query_one("#tune-budget")
        budget.focus()
        budget.value = "20"
        await pilot.press("enter")  # Enter submits the box: the tune starts
        await wait_for(pilot, lambda: tune.running, what="the tune started by Enter")
        assert budget.disabled and app.focused is not None and app.focused.id == "tune-cancel"
        await pilot.press("h")  # a screen letter mid-tune reaches the app, not a text box
        await wait_for(pilot, lambda: app.screen is app.screen_named("home"), what="h mid-tune")
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen is tune, what="back on tune")
        await pilot.pause(0.1)
        assert "esc Cancel tuning" in footer_line(app)  # shown while there is a tune to cancel
        await pilot.press("escape")  # Esc cancels the running tune
        await wait_for(pilot, lambda: not tune.running, timeout=60, what="the cancelled tune")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="q quitting", timeout=20)
