"""`moetui detect --json` schema (the Rig.to_dict() shape other tools read), the same schema for reference
rigs, and `moetui plan --rig NAME` for every reference rig."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from moetui.cli import main as cli_main
from moetui.hardware import list_presets
from moetui.hardware.rig import SCHEMA_VERSION, Rig

REPO = Path(__file__).resolve().parents[1]


def _pythonpath(*first: Path) -> str:
    """These folders first, then whatever PYTHONPATH already holds (a GPU box brings deps that way)."""
    return os.pathsep.join([*(str(p) for p in first), *filter(None, [os.environ.get("PYTHONPATH")])])
FIX = Path(__file__).parent / "fixtures" / "hardware"


def _check(obj: Any, klass: type, where: str) -> None:
    """obj (parsed JSON) has exactly klass's fields, each of its declared type (None where Optional)."""
    hints = typing.get_type_hints(klass)
    fields = {f.name for f in dataclasses.fields(klass)}
    assert isinstance(obj, dict), where
    assert set(obj) == fields, f"{where}: keys differ: {set(obj) ^ fields}"
    for name in fields:
        _check_value(obj[name], hints[name], f"{where}.{name}")


def _check_value(v: Any, tp: Any, where: str) -> None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None:
            assert type(None) in args, f"{where}: null not allowed"
            return
        (tp,) = [a for a in args if a is not type(None)]
        origin = typing.get_origin(tp)
    if origin is list:
        assert isinstance(v, list), where
        (item,) = typing.get_args(tp)
        for i, x in enumerate(v):
            _check_value(x, item, f"{where}[{i}]")
    elif dataclasses.is_dataclass(tp):
        _check(v, tp, where)
    elif tp is float:
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{where}: {v!r} is not a number"
    elif tp is int:
        assert isinstance(v, int) and not isinstance(v, bool), f"{where}: {v!r} is not an integer"
    else:
        assert isinstance(v, tp), f"{where}: {v!r} is not {tp}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=_pythonpath(REPO))
    return subprocess.run([sys.executable, "-m", "moetui", "detect", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=60, check=False)


def test_detect_json_schema_on_this_machine() -> None:
    p = _cli("--json", "--no-bandwidth")
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", "stdout is the JSON and stderr stays quiet (llama.cpp's registration logs are muted)"
    d = json.loads(p.stdout)
    _check(d, Rig, "rig")
    assert d["schema_version"] == SCHEMA_VERSION and d["source"] == "detected"
    assert d["bandwidth_probe"] is None and d["ram_bandwidth_gbs"] is None  # --no-bandwidth
    assert d["memory"]["total_bytes"] > 0 and d["cpu"]["logical_cores"] >= 1
    assert d["build"]["installed"] and "CPU" in d["build"]["backends"]
    assert all(isinstance(w, str) and w for w in d["warnings"])


def test_recorded_gpu_captures_follow_the_schema() -> None:
    for path in sorted(FIX.glob("detect_*.json")):
        _check(json.loads(path.read_text()), Rig, path.name)


@pytest.mark.parametrize("name", list_presets())
def test_reference_rig_json_follows_the_same_schema(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["detect", "--rig", name, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    _check(d, Rig, name)
    assert d["source"] == "preset" and d["fingerprint"].startswith("preset-")


@pytest.mark.parametrize("name", list_presets())
def test_plan_works_for_every_reference_rig(name: str, tiny_moe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["plan", str(tiny_moe), "--rig", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rig"] == cli_rig_name(name)


def cli_rig_name(name: str) -> str:
    from moetui.hardware import load_preset

    return load_preset(name).name


def test_plan_with_an_unknown_rig_is_one_line_and_exit_2(tiny_moe: Path) -> None:
    env = dict(os.environ, PYTHONPATH=_pythonpath(REPO))
    p = subprocess.run([sys.executable, "-m", "moetui", "plan", str(tiny_moe), "--rig", "gtx-9999"], capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "no reference rig named 'gtx-9999'" in p.stderr


def test_detect_stays_light() -> None:
    """What keeps `moetui detect` under 2 s: no other command's modules (gguf, the tuner), no
    `import llama_cpp` (its libllama is opened directly), no Textual."""
    code = ("import contextlib, io, sys; from moetui.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): rc = main(['detect', '--no-bandwidth', '--json'])\n"
            "print(rc, sorted(m for m in ('gguf', 'llama_cpp', 'textual', 'moetui.tuner', 'moetui.model.info') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=_pythonpath(REPO))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split(None, 1) == ["0", "[]\n"]
