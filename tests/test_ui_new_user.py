"""The app as a new user meets it (issue 28), on the real app through Pilot: keys typed fast land in the
box they are meant for and never switch screens, Chat takes the keys back when shown, Esc's footer label
says what it does, a pasted ESC byte is a symbol, the tune's clock ticks without events, "selected" and
the Rig dropdown follow the selection, a bad context is refused in words, Export does not wrap."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual import events
from textual.app import App, ComposeResult
from ui_pilot import settle, wait_for

from moetui.config import RunConfig
from moetui.hardware import load_preset
from moetui.tuner import ProbeStarted
from moetui.tuner.probe import Probe
from moetui.ui.app import SCREENS_BY_NAME, MoetuiApp
from moetui.ui.screens.best import BestConfigScreen
from moetui.ui.screens.rig import DETECTED
from moetui.ui.state import ConfigChosen
from moetui.ui.tune_view import TuneView
from moetui.ui.widgets.progress_eta import ProgressEta

RIG = "rtx4090-ddr5-64"
pytestmark = pytest.mark.anyio


def idle_app(**kw) -> MoetuiApp:  # type: ignore[no-untyped-def]
    app = MoetuiApp(rig=load_preset(RIG), detect=False, **kw)
    app.install_screen(BestConfigScreen(autostart=False), "best")
    return app


def footer_line(app: MoetuiApp) -> str:
    return app.screen_text().splitlines()[-1]


async def footer_shows(app: MoetuiApp, pilot, *labels: str) -> None:  # type: ignore[no-untyped-def]
    """Wait (a busy machine redraws late) until the footer shows every label."""
    await wait_for(pilot, lambda: all(label in footer_line(app) for label in labels), timeout=10,
                   what=f"{labels} in the footer (it reads {footer_line(app)!r})")


async def planned_then(app: MoetuiApp, pilot, name: str):  # type: ignore[no-untyped-def]
    """The selected model planned, then the screen `name` shown (by its key); returns the screen."""
    await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
    await pilot.press(SCREENS_BY_NAME[name][2])
    screen = app.screen_named(name)
    await wait_for(pilot, lambda: app.screen is screen, what=f"the {name} screen")
    return screen


async def open_chat(app: MoetuiApp, pilot):  # type: ignore[no-untyped-def]
    """Chat shown, its message box focused: (the screen, the box)."""
    await settle(app, pilot)
    await pilot.press("c")
    chat = app.screen_named("chat")
    await wait_for(pilot, lambda: app.screen is chat, what="the chat screen")
    box = chat.query_one("#chat-input")
    await wait_for(pilot, lambda: app.focused is box, what="the focused message box")
    await pilot.pause(0.1)
    return chat, box


async def type_fast(app: MoetuiApp, text: str) -> None:
    """Keys as a terminal delivers a fast typist's (or tmux send-keys') text: all queued at once, none
    waiting for the previous one to be handled (Pilot's press waits after each key)."""
    for ch in text:
        app.post_message(events.Key(ch, ch))


async def test_a_path_typed_fast_right_after_models_opens_keeps_every_character(tiny_moe: Path) -> None:
    app = idle_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await type_fast(app, str(tiny_moe))  # while the screen is still opening
        box = app.screen_named("models").query_one("#models-path")
        await wait_for(pilot, lambda: box.value == str(tiny_moe), timeout=10,
                       what=f"the whole path in the box (has {box.value!r})")
        assert app.screen is app.screen_named("models")  # no letter of it switched screens


async def test_coming_back_to_chat_types_into_its_message_box() -> None:
    app = idle_app()
    async with app.run_test(size=(80, 24)) as pilot:
        chat, box = await open_chat(app, pilot)
        # Esc leaves the box, and the footer says so (not just "Stop", which it does only mid-reply)
        await footer_shows(app, pilot, "esc Leave field")
        assert "esc Stop" not in footer_line(app)
        await pilot.press("escape")
        await footer_shows(app, pilot, "q Quit")  # out of the box the letter keys are back, and the footer has room
        chat.generating = True  # mid-reply Esc is "Stop", and "q Quit" still fits at 80 columns
        await footer_shows(app, pilot, "esc Stop", "q Quit")
        chat.generating = False
        await footer_shows(app, pilot, "^r Reload")
        await pilot.press("h")
        await wait_for(pilot, lambda: app.screen is app.screen_named("home"), what="h after Esc")
        await pilot.press("c")
        await type_fast(app, "Hello, who are you?")
        await wait_for(pilot, lambda: box.value == "Hello, who are you?", timeout=10,
                       what=f"the text in Chat's box (has {box.value!r})")
        assert app.screen is chat and app.focused is box
        # F2 opens the system prompt and, closed again, gives the keys back to the message box
        box.value = ""
        await pilot.press("f2", "f2")
        await type_fast(app, "Name three colors.")
        await wait_for(pilot, lambda: box.value == "Name three colors.", timeout=10,
                       what=f"the text after F2 (has {box.value!r})")
        # Ctrl+N after Esc: a new chat, typing again
        await pilot.press("escape", "ctrl+n")
        box.value = ""
        await type_fast(app, "xyz")
        await wait_for(pilot, lambda: box.value == "xyz", timeout=10, what=f"the text after Ctrl+N (has {box.value!r})")
        assert app.screen is chat


async def test_a_pasted_escape_byte_is_shown_as_a_symbol_and_the_box_keeps_the_focus() -> None:
    app = idle_app()
    async with app.run_test(size=(80, 24)) as pilot:
        chat, box = await open_chat(app, pilot)
        app.post_message(events.Paste("say \x1b[31mhi\x07"))
        await wait_for(pilot, lambda: box.value != "", what="the pasted text")
        assert box.value == "say \u241b[31mhi\u2407" and app.focused is box


class _Bar(App[None]):
    def compose(self) -> ComposeResult:
        yield ProgressEta(id="bar")


async def test_elapsed_and_eta_tick_every_second_without_events(tiny_moe: Path) -> None:
    app = _Bar()
    async with app.run_test(size=(80, 5)) as pilot:
        bar = app.query_one(ProgressEta)
        view = TuneView(bar)
        view.restart(120.0)
        probe = Probe(index=1, config=RunConfig(model_path=str(tiny_moe)), changes={}, label="plan")
        view.apply(ProbeStarted(probe, n_done=0, eta_s=100.0))
        t0 = time.monotonic()
        await pilot.pause(2.4)  # no event in between: a probe can take minutes
        line = bar._line()
        elapsed = time.monotonic() - t0
        assert f"elapsed {round(bar.elapsed_s)} s" in line and bar.elapsed_s >= 2, line
        assert bar.eta_s is not None and bar.eta_s <= 100 - elapsed + 1.5, line  # counting down
        assert bar.fraction > 0
        view.stopped("cancelled")  # a cancel keeps the time it ran, not 0
        await pilot.pause(1.2)
        assert bar.elapsed_s >= 2 and "cancelled" in bar._line() and "ETA" not in bar._line()


async def test_the_rig_dropdown_names_the_rig_the_details_show(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen is app.screen_named("rig"), what="the rig screen")
        assert app.screen.query_one("#rig-select").value == RIG  # the rig the details show
        app.state.rig.source = "detected"
        app.refresh_screens()
        assert app.screen.query_one("#rig-select").value == DETECTED


async def test_selected_follows_the_selection(tiny_moe: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-tiny.gguf"
    other.write_bytes(tiny_moe.read_bytes())
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        models = app.screen_named("models")
        await wait_for(pilot, lambda: str(tiny_moe) in models.rows, what="the models listed")
        table = models.query_one("#models-table")
        await wait_for(pilot, lambda: table.get_cell(str(tiny_moe), "source") == "selected", what="selected")
        app.select_model(str(other))
        await wait_for(pilot, lambda: str(other) in models.rows and app.state.model_path == str(other),
                       what="the other model selected and listed")
        await wait_for(pilot, lambda: table.get_cell(str(other), "source") == "selected", what="selected moved")
        assert table.get_cell(str(tiny_moe), "source") != "selected"


async def test_a_bad_context_is_refused_in_words_and_stays_said(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(120, 30)) as pilot:
        plan_screen = await planned_then(app, pilot, "plan")
        plan_screen.query_one("#plan-ctx").focus()
        await pilot.press("minus", "5")
        await pilot.pause(0.2)
        app.refresh_screens()  # any redraw (a tuned profile found, a rig change) keeps the message
        await pilot.pause(0.1)
        assert "context must be at least 256 tokens, not -5" in app.screen_text()


async def test_export_does_not_wrap_a_command_and_says_what_copy_can_promise(tiny_moe: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
        app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=32768, n_gpu_layers=0)))
        await pilot.press("e")
        await wait_for(pilot, lambda: "-c 32768" in getattr(app.screen, "text", ""), what="the export text")
        await pilot.pause(0.2)
        area = app.screen.query_one("#export-text")
        command = next(line for line in app.screen.text.splitlines() if "llama-server" in line)
        assert len(command) > 80  # wider than the screen: it scrolls sideways instead of wrapping
        assert area.wrapped_document.height == area.document.line_count  # one screen row per line, none cut
        notes: list[str] = []
        monkeypatch.setattr(app, "notify", lambda message, **kw: notes.append(message))
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == app.screen.text
        assert notes and "OSC 52" in notes[-1] and "set-clipboard on" in notes[-1] and "saves" in notes[-1]


async def test_models_shows_the_plans_figure_for_the_selected_model_after_a_tune(tiny_moe: Path) -> None:
    """Models planned with default efficiency factors (585 tok/s) while Home and Plan used the ones a tune
    measured on this rig (972): one model, one config, one figure."""
    from moetui.hardware.fingerprint import fingerprint
    from moetui.runtime.bench import BenchResult
    from moetui.sizing.speed import EfficiencyFactors
    from moetui.tuner import ProfileStore, TuneResult
    from moetui.tuner.engine import llama_version
    from moetui.ui.widgets.format import tps

    rig = load_preset(RIG)
    best = Probe(0, RunConfig(model_path=str(tiny_moe)), {}, "plan", status="ok", score=50.0,
                 bench=BenchResult(64, 16, 3, [500.0] * 3, [50.0] * 3))
    eff = EfficiencyFactors(gpu_bw=0.2, cpu_bw=0.3, source="tuner: test").to_dict()
    ProfileStore().put(TuneResult(best=best, baseline=best, plan_probe=best, predicted={}, probes=[best],
                                  rig_fingerprint=rig.fingerprint or fingerprint(rig), model_id="another-model",
                                  llama_version=llama_version(rig), objective="decode", elapsed_s=1.0,
                                  stopped="converged", model_path="/elsewhere.gguf", efficiency=eff, created=time.time()))
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig, detect=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
        assert not any("default efficiency factors" in line for line in app.state.plan.explanation)
        await pilot.press("m")
        models = app.screen_named("models")
        await wait_for(pilot, lambda: str(tiny_moe) in models.rows, what="the models listed")
        table = models.query_one("#models-table")
        await wait_for(pilot, lambda: table.get_cell(str(tiny_moe), "tps") not in ("", "…"), what="the verdict")
        assert table.get_cell(str(tiny_moe), "tps") == tps(app.state.plan.decode_tps)


async def test_home_says_which_figures_are_predicted_and_which_measured_and_when(tiny_moe: Path) -> None:
    from moetui.hardware.fingerprint import fingerprint
    from moetui.model.inspect import inspect_file
    from moetui.runtime.bench import BenchResult
    from moetui.tuner import ProfileStore, TuneResult
    from moetui.tuner.engine import llama_version

    rig = load_preset(RIG)
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig, detect=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "tok/s prompt" in app.screen_text(), what="the plan on Home")
        assert "tok/s prompt (default factors)" in app.screen_text()
    best = Probe(0, RunConfig(model_path=str(tiny_moe), n_ctx=2048, n_ubatch=256), {"n_ubatch": 256}, "ub 256",
                 status="ok", score=50.0, bench=BenchResult(64, 16, 3, [500.0] * 3, [50.0] * 3))
    ProfileStore().put(TuneResult(best=best, baseline=best, plan_probe=best, predicted={}, probes=[best],
                                  rig_fingerprint=rig.fingerprint or fingerprint(rig),
                                  model_id=inspect_file(tiny_moe).identity, llama_version=llama_version(rig),
                                  objective="decode", elapsed_s=1.0, stopped="converged", model_path=str(tiny_moe),
                                  created=time.time() - 300))
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig, detect=False)
    async with app.run_test(size=(130, 30)) as pilot:  # the line, with its context, unwrapped
        await wait_for(pilot, lambda: "tuned config in use" in app.screen_text(), what="the tuned config on Home")
        text = app.screen_text()
        assert "tuned config in use: measured 50.0 tok/s decode, 500 tok/s prompt, 5 min ago, context " in text, text


@pytest.mark.parametrize("width", [80, 120])
async def test_models_cells_that_tell_rows_apart_are_not_cut(tiny_moe: Path, width: int) -> None:
    """At 80x24 two models read "Qwen3-30B-…ct-2507", "UD-Q4_K", "~17.3 Gi"; at 120 "hybrid: 25 in RA"."""
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx3060-ddr4-32"), detect=False)
    async with app.run_test(size=(width, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        models = app.screen_named("models")
        await wait_for(pilot, lambda: models._done is not None, timeout=120, what="the verdicts")
        table = models.query_one("#models-table")
        widths = {str(c.key.value): c.width for c in table.columns.values()}
        for key, row in models.rows.items():
            for col in ("source", "quant", "size", "fit", "tps"):
                cell = str(table.get_cell(key, col))
                if col == "fit" and cell.startswith(("no plan", "unreadable", "no shape")):
                    continue  # an error's words are in the status line; the cell says which kind
                assert len(cell) <= widths[col], (width, row.name, col, cell)
        names = [str(table.get_cell(k, "model")) + str(table.get_cell(k, "quant")) + str(table.get_cell(k, "source"))
                 for k in models.rows]
        assert len(names) == len(set(names))  # no two rows read the same


async def test_every_dropdown_shows_its_label(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
        for key, labels in (("p", ("KV type", "context")), ("e", ("what", "shell"))):
            await pilot.press(key)
            await pilot.pause(0.3)
            top = "\n".join(app.screen_text().splitlines()[:3])
            for label in labels:
                assert label in top, (key, label, top)


async def test_chat_on_another_model_does_not_show_the_last_ones_figures(tiny_moe: Path, tmp_path: Path) -> None:
    from moetui.ui.widgets.stats_bar import ChatStatsBar

    other = tmp_path / "other-tiny.gguf"
    other.write_bytes(tiny_moe.read_bytes())
    app = MoetuiApp(rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=512, n_gpu_layers=0)))
        await pilot.pause()
        await pilot.press("c")
        chat = app.screen_named("chat")
        await wait_for(pilot, lambda: chat.loaded_config is not None, timeout=120, what="the first model loaded")
        bar = chat.query_one(ChatStatsBar)
        bar.decode_tps, bar.prompt_tps, bar.tokens = 541.0, 7393.0, 40  # what a reply on it left behind
        app.post_message(ConfigChosen(RunConfig(model_path=str(other), n_ctx=512, n_gpu_layers=0)))
        await wait_for(pilot, lambda: chat.model_loading or chat.loaded_config is not None
                       and chat.loaded_config.model_path == str(other), what="the other model loading")
        assert bar.decode_tps is None and bar.prompt_tps is None and bar.tokens == 0
        assert "541" not in app.screen_text() and "7393" not in app.screen_text()
        await wait_for(pilot, lambda: chat.loaded_config is not None, timeout=120, what="the other model loaded")
        await pilot.press("escape", "h")  # leave Chat before quitting


async def test_the_tune_screen_refuses_a_budget_too_small_naming_one_that_works(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset(RIG), detect=False)
    async with app.run_test(size=(120, 30)) as pilot:
        tune = await planned_then(app, pilot, "tune")
        tune.query_one("#tune-budget").value = "1"
        tune.query_one("#tune-retune").value = True
        await wait_for(pilot, lambda: app.focused is tune.query_one("#tune-start"), what="Start focused, s a key")
        await pilot.press("s")
        await wait_for(pilot, lambda: "budget of at least" in str(tune.query_one("#tune-best").render()), timeout=60,
                       what="the refusal")
        assert not tune.running and "Not started" in str(tune.query_one("#tune-best").render())
        assert tune.query_one("#tune-progress").fraction < 0.5 and not tune.query_one("#tune-progress").clock_running
