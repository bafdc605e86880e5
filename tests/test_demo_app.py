"""After `moetui demo` the app knows the demo model: the selection is remembered in the user data dir,
`moetui` opens on it, the Models screen lists it; the demo's speed lines say what each one measures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ui_pilot import settle, wait_for

from moetui.hardware import load_preset
from moetui.ui.app import MoetuiApp
from moetui.ui.selection import remember_model, remembered_model


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", "demo", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_demo_no_app_remembers_the_demo_model() -> None:
    proc = _demo("--no-app", "--no-real")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    data = Path(os.environ["MOETUI_DATA_DIR"])
    saved = json.loads((data / "selection.json").read_text())["model_path"]
    assert Path(saved).is_file() and Path(saved).parent == data / "models"
    assert remembered_model() == saved
    # one figure, one meaning: the chat line is what the user saw streamed, the bench line llama.cpp alone
    chat = re.search(r"^chat: (\d+) tokens streamed at ([\d.]+) tok/s, as you would see them", out, re.M)
    bench = re.search(r"^bench: llama\.cpp alone, median of 3: prompt ([\d.]+) tok/s \(pp128\), decode ([\d.]+) "
                      r"tok/s \(tg32\); the plan predicted decode ([\d.]+) tok/s", out, re.M)
    assert chat and bench, out
    assert int(chat.group(1)) > 0 and float(bench.group(2)) > 0
    assert "decode" not in out.split("chat:")[1].split("\n")[0].split("(")[0], "the chat line names no decode figure"
    assert "`moetui` opens the app with the demo model selected" in out
    assert "tg32 " not in out  # the bare llama-bench label without saying what it is: gone


@pytest.mark.slow
def test_demo_json_names_each_figure_once() -> None:
    proc = _demo("--json", "--no-real")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["bench"]) == {"pp_tok_s", "tg_tok_s"} and set(summary["chat"]) == {"tokens", "tok_s"}


def test_a_stale_or_damaged_selection_is_forgotten(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    remember_model(str(model))
    assert remembered_model() == str(model.resolve())
    model.unlink()
    assert remembered_model() is None  # deleted since: nothing selected, no error
    remember_model("qwen3-30b-a3b:Q4_K_M")  # a shape preset is not a file: kept as it is
    assert remembered_model() == "qwen3-30b-a3b:Q4_K_M"
    (Path(os.environ["MOETUI_DATA_DIR"]) / "selection.json").write_text("{broken")
    assert remembered_model() is None


@pytest.mark.anyio
async def test_the_app_opens_on_the_remembered_demo_model_and_lists_it(tiny_moe: Path) -> None:
    demo_dir = Path(os.environ["MOETUI_DATA_DIR"]) / "models"
    demo_dir.mkdir(parents=True)
    demo = demo_dir / "demo-qwen3-30b-a3b-tiny-Q4_K_M.gguf"
    demo.write_bytes(tiny_moe.read_bytes())
    remember_model(str(demo))
    app = MoetuiApp(model_path=remembered_model(), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.state.model_path == str(demo)
        assert "Qwen3-30B-A3B (tiny)" in app.screen_text()
        await pilot.press("m")
        await wait_for(pilot, lambda: "Enter selects" in app.screen_text(), what="the Models scan", timeout=60)
        text = app.screen_text()
        # long names are shortened in the middle (the quant and the source stay readable at 80 columns)
        assert "demo-qwen3-30b" in text and "Q4_K_M.gguf  selected" in text
        rows = app.screen.rows
        assert str(demo) in rows
    # a model picked in the app is remembered for the next start
    other = demo_dir / "other-Q4_K_M.gguf"
    other.write_bytes(tiny_moe.read_bytes())
    app = MoetuiApp(model_path=str(other), rig=load_preset("rtx4090-ddr5-64"))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
    assert remembered_model() == str(other)


def test_an_offline_hub_step_says_so_and_what_works_offline() -> None:
    """`moetui models list` and `download` need the hub: offline, one error line, then what still works."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for args in (["models", "list", "me/some-GGUF"], ["models", "download", "me/some-GGUF:Q4_K_M"]):
        proc = subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, timeout=120,
                              env=env, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("moetui: error: offline"), proc.stderr
        assert lines[1].startswith("moetui: the hub cannot be reached; what works offline:")
        assert "moetui demo" in lines[1] and "--rig" in lines[1]
