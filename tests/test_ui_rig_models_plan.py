"""Rig, Models and Plan screens on real parts: reference rigs, the tiny proxy, the catalog, the sizing core."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from ui_pilot import settle, wait_for

from moetui.hardware import load_preset
from moetui.ui.app import MoetuiApp
from moetui.ui.state import RigChanged
from moetui.ui.widgets.gauge import Gauge

pytestmark = pytest.mark.anyio
SPLIT_MODEL = "qwen3-30b-a3b:Q8_0"  # 32 GB of weights: hybrid on a 24 GB card, deterministic (shape preset)


# ---- rig ------------------------------------------------------------------------------------------
async def test_rig_screen_shows_the_rig_and_live_gauges(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        await pilot.pause(1.3)  # a few 2 Hz samples of this machine
        text = app.screen_text()
        assert "NVIDIA GeForce RTX 4090" in text and "1008 GB/s" in text
        assert "backends CUDA, CPU" in text
        ram = app.screen.query_one("#gauge-ram", Gauge)
        assert ram.value is not None and 0 < ram.value < ram.total  # a real psutil sample


async def test_home_and_rig_say_when_and_how_ram_bandwidth_was_measured(tiny_moe: Path) -> None:
    import time

    from moetui.hardware.rig import BandwidthResult

    rig = load_preset("rtx4090-ddr5-64")
    rig.source = "detected"  # as detection fills it in: a probe's figure, with its date
    rig.bandwidth_probe = BandwidthResult(copy_gbs=24.1, read_gbs=22.0, threads=16, buffer_bytes=2**30,
                                          measured_at=time.time() - 2 * 3600 - 60, checks=2, check_gbs=8.0,
                                          note="RAM busy now: a quick check read 8.0 GB/s; plans use the 24.1")
    rig.ram_bandwidth_gbs = 24.1
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig, remember=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        text = app.screen_text()
        assert "RAM bandwidth 24.1 GB/s, measured 2 h ago" in text and "RAM busy now" in text
        await pilot.press("r")
        await pilot.pause()
        text = app.screen_text()
        assert "bandwidth 24.1 GB/s, measured 2 h ago, peak 96 GB/s" in text
        assert "RAM bandwidth: 16 threads copying and reading 1.0 GiB; confirmed by 2 quick checks since" in text
        assert "RAM busy now: a quick check read 8.0 GB/s" in text


async def test_rig_screen_shows_the_rebuild_hint_for_a_cpu_only_build(tiny_moe: Path) -> None:
    rig = load_preset("rtx4090-ddr5-64")
    rig.build.gpu_offload = False
    rig.build.backends = ["CPU"]
    rig.build.advice = "llama-cpp-python was built without CUDA: rebuild with CMAKE_ARGS=-DGGML_CUDA=on"
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        assert app.state.plan is not None and app.state.plan.mode == "cpu_only"
        await pilot.press("r")
        await pilot.pause()
        text = app.screen_text()
        assert "CPU only" in text and "rebuild with CMAKE_ARGS" in text


async def test_rig_screen_on_this_machine_shows_no_driver_internals(tiny_moe: Path, cpu_rig) -> None:
    """This machine, as detected: whatever its GPUs and drivers, the screen speaks in words, never in NVML's
    ("NVML Shared Library Not Found") or the detector's raw labels."""
    app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen.query_one("#gauge-ram", Gauge).value is not None, what="a sample")
        await pilot.pause(0.6)
        text = app.screen_text()
        assert "NVML" not in text and "Shared Library" not in text and "cpu_only" not in text
        if not cpu_rig.gpus:
            assert "GPU    none found" in text
            if cpu_rig.build.gpu_offload:  # a build that could offload, on a machine with nothing to offload to
                assert "no GPU found: runs on the CPU" in text and "; GPU offload" not in text


async def test_picking_a_reference_rig_replans() -> None:
    app = MoetuiApp(model_path=SPLIT_MODEL, rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        on_4090 = app.state.plan
        assert on_4090 is not None and on_4090.mode == "experts_split"
        await pilot.press("r")
        await pilot.pause()
        app.screen.query_one("#rig-select").value = "rtx3060-ddr4-32"
        await settle(app, pilot)
        assert "3060" in app.state.rig.name
        on_3060 = app.state.plan
        assert on_3060 is not on_4090
        in_ram = lambda p: sum(1 for ly in p.layers if ly.experts_cpu)  # noqa: E731
        assert in_ram(on_3060) > in_ram(on_4090)  # a 12 GB card keeps more expert layers in RAM


# ---- models ---------------------------------------------------------------------------------------
async def test_models_lists_local_and_catalog_with_verdicts(tiny_moe: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / "other-tiny.gguf").write_bytes(tiny_moe.read_bytes())
    from moetui.hub.discovery import add_folder

    add_folder(folder)
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await settle(app, pilot, 4)
        screen = app.screen
        rows = screen.rows
        assert str(tiny_moe) in rows and rows[str(tiny_moe)].source == "selected"
        assert str(folder / "other-tiny.gguf") in rows
        table = screen.query_one("#models-table")
        verdicts = {key: table.get_cell(key, "fit") for key in rows}
        assert verdicts[str(tiny_moe)] == "all in VRAM"
        cat = [k for k, r in rows.items() if r.shape == "qwen3-235b-a22b"]
        assert cat and all(verdicts[k] == "does not fit" for k in cat)  # 88+ GB on a 64 GB + 24 GB rig
        q8 = next(k for k, r in rows.items() if r.shape == "qwen3-30b-a3b" and r.quant == "Q8_0")
        assert verdicts[q8].startswith("RAM: ") and verdicts[q8].endswith(" layers")
        assert float(table.get_cell(q8, "tps")) > 0


async def test_selecting_a_catalog_row_plans_it(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await settle(app, pilot, 4)
        screen = app.screen
        q8 = next(k for k, r in screen.rows.items() if r.shape == "qwen3-30b-a3b" and r.quant == "Q8_0")
        table = screen.query_one("#models-table")
        await wait_for(pilot, lambda: screen.rows[q8].info is not None)
        table.move_cursor(row=table.get_row_index(q8))
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.model_path == q8 and app.state.plan is not None)
        assert app.state.plan is not None and app.state.plan.mode == "experts_split"
        assert app.state.plan.config.model_path == q8


async def test_adding_a_bad_file_reports_it(tiny_moe: Path, tmp_path: Path) -> None:
    bad = tmp_path / "half.gguf"
    bad.write_bytes(tiny_moe.read_bytes()[: len(tiny_moe.read_bytes()) // 2])
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await pilot.pause()
        await pilot.click("#models-path")
        await pilot.press(*str(bad), "enter")
        await settle(app, pilot)
        assert app.state.model_error and "half.gguf" in app.state.model_error
        assert app.state.model_path == str(tiny_moe)
        await pilot.press("escape", "p")
        await pilot.pause()
        assert type(app.screen).__name__ == "PlanScreen"


# ---- plan -----------------------------------------------------------------------------------------
async def test_plan_draws_the_split_layer_by_layer() -> None:
    app = MoetuiApp(model_path=SPLIT_MODEL, rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        lines = app.screen_text().splitlines()
        p = app.state.plan
        down = next(line for line in lines if line.strip().startswith("exp.down"))
        cells = down.split("exp.down", 1)[1].strip()
        expected = "".join("▒" if "down" in ly.experts_cpu else "█" for ly in p.layers)
        assert cells == expected
        assert any("RAM (CPU)" in line for line in lines) and any("CUDA0" in line for line in lines)
        assert any(line.lstrip().startswith("CUDA0 ") and "/ 23.0 GiB" in line for line in lines)  # memory bar (24.7 GB)
        assert f"decode ~{p.decode_tps:.1f} tok/s" in "\n".join(lines)


async def test_plan_knobs_replan(tiny_moe: Path, tiny_draft: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        assert app.state.plan.config.n_ctx == 32768
        await pilot.click("#plan-ctx")
        await pilot.press(*"8192")
        await settle(app, pilot)
        assert app.state.plan.config.n_ctx == 8192
        assert app.state.settings.n_ctx == 8192

        app.screen.query_one("#plan-kv").value = "q8_0"
        await settle(app, pilot)
        assert app.state.plan.config.cache_type_k == "q8_0" and app.state.plan.config.flash_attn == "on"

        await pilot.click("#plan-draft")
        await pilot.press(*str(tiny_draft), "enter")
        await settle(app, pilot)
        assert app.state.plan.config.draft is not None
        assert app.state.plan.config.draft.model_path == str(tiny_draft)
        assert "draft:" in app.screen_text()


async def test_plan_headroom_that_leaves_no_room_is_shown_inline() -> None:
    app = MoetuiApp(model_path=SPLIT_MODEL, rig=load_preset("rtx3060-ddr4-32"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        before = app.state.plan
        assert before is not None
        await pilot.click("#plan-margin")
        await pilot.press(*"11")  # 11 GiB of headroom on a 12 GB card: the model no longer fits 32 GB of RAM
        await settle(app, pilot)
        assert app.state.plan is None and "does not fit" in (app.state.plan_error or "")
        assert "✗" in app.screen_text() and "does not fit" in app.screen_text()
        assert not app._notifications  # inline, not a toast per keystroke
        await pilot.press("backspace", "backspace", *"1")
        await settle(app, pilot)
        assert app.state.plan is not None and app.state.plan_error is None


async def test_plan_rejects_a_context_beyond_native_inline(tiny_moe: Path) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        await pilot.click("#plan-ctx")
        await pilot.press(*"99999999")
        await settle(app, pilot)
        assert "native context" in (app.state.plan_error or "")
        assert "✗ context 99999999 is beyond" in app.screen_text() and "262144" in app.screen_text()


async def test_plan_on_a_cpu_only_rig_says_nothing_of_a_gpu(tiny_moe: Path) -> None:
    """No GPU (a reference rig without its card): the Why text speaks of the CPU and RAM only, and the VRAM
    headroom knob is gone; a rig with a GPU shows the knob again."""
    rig = dataclasses.replace(load_preset("rtx4090-ddr5-64"), gpus=[])
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        assert app.state.plan is not None and app.state.plan.mode == "cpu_only"
        why = "\n".join(app.state.plan.explanation)
        for word in ("GPU beside", "VRAM", "n_gpu_layers", "most time reading CPU", "cpu compute"):
            assert word not in why
        assert "reading the weights in RAM" in why and "no GPU found" in why
        assert not app.screen.query_one("#plan-margin").display
        assert "margin GiB" not in app.screen_text()
        app.post_message(RigChanged(load_preset("rtx4090-ddr5-64")))
        await settle(app, pilot)
        assert app.screen.query_one("#plan-margin").display and "margin GiB" in app.screen_text()
        no_offload = load_preset("rtx4090-ddr5-64")
        no_offload.build.gpu_offload = False  # a GPU, and a llama.cpp build that cannot use it
        app.post_message(RigChanged(no_offload))
        await settle(app, pilot)
        assert app.state.plan.mode == "cpu_only" and not app.screen.query_one("#plan-margin").display
        assert "the GPU is not used" in "\n".join(app.state.plan.explanation)


async def test_plan_says_what_its_speeds_are(tiny_moe: Path) -> None:
    """#28: every speed says what it is. The plan's figures are predicted, from the default factors (no tune
    measured this rig yet); once a tune's winner is the config in use, its line says it was measured, and when."""
    import time

    from moetui.runtime.bench import BenchResult
    from moetui.tuner import Probe, TuneResult
    from moetui.ui.state import TuneCompleted

    app = MoetuiApp(model_path=str(tiny_moe), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: "predicted decode ~" in app.screen_text(), what="the plan's summary")
        p = app.state.plan
        text = app.screen_text()
        assert f"predicted decode ~{p.decode_tps:,.0f} tok/s · prompt ~" in text and "(default factors)" in text
        assert "measured" not in text

        best = Probe(0, p.config.replace(n_ubatch=256), {"n_ubatch": 256}, "ub 256", status="ok", score=50.0,
                     bench=BenchResult(64, 16, 3, [500.0] * 3, [50.0] * 3))
        tuned = TuneResult(best=best, baseline=None, plan_probe=best, predicted={}, probes=[best],
                           rig_fingerprint="r", model_id="m", llama_version="v", objective="turn", elapsed_s=1.0,
                           stopped="converged", created=time.time() - 300)
        app.post_message(TuneCompleted(tuned))
        await wait_for(pilot, lambda: "Chat and Export use the tuned config" in app.screen_text(), what="the tuned line")
        text = app.screen_text()
        assert "measured 50.0 tok/s decode, 500 tok/s prompt, 5 min ago" in text, text
