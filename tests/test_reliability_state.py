"""Issue 19, defects 10 and 11, and saved state under stress: a corrupt, hostile or future-version
profile store never breaks plan/run/tune/export (it is reported; a corrupt one moved aside, issue 30,
a future one left as it is); a profile that
cannot be saved (a folder in its place, a full disk) loses nothing and says why; a writer killed mid
atomic write leaves no temp file that outlives the next write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moetui.paths import atomic_write_json
from moetui.tuner import ProfileStore
from tests.reliability_disk import fill, run_with_file_size_limit, small_tmpfs
from tests.test_tuner_store import _result


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, timeout=timeout)


def _profiles_dir() -> Path:
    return Path(os.environ["MOETUI_DATA_DIR"]) / "profiles"


HOSTILE_PROFILES = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep_object": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "efficiency_list": None,  # filled below: a valid profile with "efficiency": [1, 2]
    "efficiency_nan": None,
    "efficiency_str": None,
    "future": None,
    "not_utf8": "\udcff",
}


def _valid(**changes: object) -> str:
    d = _result().to_dict()
    d.update(changes)
    return json.dumps(d)


def _write_hostile(kind: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "efficiency_list":
        path.write_text(_valid(efficiency=[1, 2], rig_fingerprint="rig-x"))
    elif kind == "efficiency_nan":
        path.write_text(_valid(efficiency={"gpu_bw": float("nan"), "cpu_bw": 0.4}).replace("NaN", "NaN"))
    elif kind == "efficiency_str":
        path.write_text(_valid(efficiency={"cpu_bw": "fast"}))
    elif kind == "future":
        path.write_text(_valid(version=99, probes="a different layout"))
    elif kind == "not_utf8":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(HOSTILE_PROFILES[kind])


@pytest.mark.parametrize("kind", list(HOSTILE_PROFILES))
def test_hostile_profile_is_reported_not_raised(kind: str, tmp_path: Path) -> None:
    """Defect 10: a deeply nested profile (RecursionError) or a non-object efficiency broke every plan."""
    store = ProfileStore(tmp_path)
    path = store.path("rig-x", "model-a", "0.3.36")
    _write_hostile(kind, path)
    before = path.read_bytes()
    got = store.get("rig-x", "model-a", "0.3.36")
    store.list()
    assert store.rig_efficiency("rig-x") is None
    assert store.warnings and str(path) in store.warnings[0]
    if kind.startswith("efficiency"):
        assert got is not None and got.efficiency is None  # the tuned config is still good
    else:
        assert got is None
    if kind == "future":
        assert "newer than this moetui" in store.warnings[0]
    if kind.startswith("efficiency") or kind == "future":
        assert path.read_bytes() == before  # reported, left as it is
    else:  # corrupt: moved aside with a notice (issue 30), never rewritten or deleted
        aside = list(path.parent.glob(path.name + ".corrupt-*"))
        assert not path.exists() and [a.read_bytes() for a in aside] == [before]
        assert "moved aside" in store.warnings[0]


@pytest.mark.parametrize("kind", ["deep", "efficiency_list"])
def test_plan_and_export_survive_a_hostile_profile_and_say_so(kind: str, tiny_moe: Path) -> None:
    from moetui.hardware import detect_rig
    from moetui.hardware.llama_build import llama_version
    from moetui.model.inspect import inspect_file

    rig = detect_rig(measure_bandwidth=False)
    store = ProfileStore()
    for args in (["plan", str(tiny_moe)], ["export", str(tiny_moe), "--tool", "server"]):
        # afresh for each: a corrupt one is moved aside by the first command that reads it (issue 30)
        _write_hostile(kind, store.path(rig.fingerprint, inspect_file(str(tiny_moe)).identity, llama_version(rig)))
        r = _cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert "warning:" in r.stderr and "profile" in r.stderr, (args, r.stderr)


def test_a_folder_where_the_profile_goes_is_a_warning_not_a_lost_tune(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    r = _result()
    store.path(r.rig_fingerprint, r.model_id, r.llama_version).mkdir(parents=True)
    assert store.put(r) is None
    assert "could not be saved" in store.warnings[-1]


def test_tune_with_a_folder_in_the_profiles_place_prints_its_result(tiny_moe: Path) -> None:
    from moetui.hardware import detect_rig
    from moetui.hardware.llama_build import llama_version
    from moetui.model.inspect import inspect_file

    rig = detect_rig(measure_bandwidth=False)
    ProfileStore().path(rig.fingerprint, inspect_file(str(tiny_moe)).identity, llama_version(rig)).mkdir(parents=True)
    r = _cli("tune", str(tiny_moe), "--budget", "60", "--dimensions", "flash_attn", "--max-probes", "1",
             "-p", "32", "-n", "8", "-r", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "run it:" in r.stdout
    assert "could not be saved" in r.stderr and "Traceback" not in r.stderr


def test_full_disk_while_saving_a_profile_keeps_the_old_one(tmp_path: Path) -> None:
    old = _result()
    with small_tmpfs(tmp_path / "disk", 256) as disk:
        if disk is not None:
            store = ProfileStore(disk / "profiles")
            first = store.put(old)
            fill(disk, 0)
            big = _result(n=3)
            big.notes = ["x" * 400_000]  # bigger than what is left
            assert store.put(big) is None
            assert "No space left" in store.warnings[-1]
            assert store.get("rig-x", "model-a", "0.3.36").to_dict() == old.to_dict()
            assert [p.name for p in first.parent.iterdir() if p.name.endswith(".tmp")] == []
            return
    # no tmpfs here: the same through a file size limit in a child
    root = tmp_path / "profiles"
    ProfileStore(root).put(old)
    code = (f"from moetui.tuner import ProfileStore\nfrom tests.test_tuner_store import _result\n"
            f"s = ProfileStore({str(root)!r})\nr = _result()\nr.notes = ['x' * 400_000]\n"
            f"assert s.put(r) is None\nprint(s.warnings[-1])\n")
    out = run_with_file_size_limit(code, 100_000, {"PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    assert "could not be saved" in out.stdout
    assert ProfileStore(root).get("rig-x", "model-a", "0.3.36").to_dict() == old.to_dict()
    assert [p for p in root.iterdir() if p.name.endswith(".tmp")] == []


def test_full_disk_while_saving_a_config_is_one_line(tiny_moe: Path, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", 64) as disk:
        if disk is None:
            pytest.skip("no tmpfs can be mounted here")
        fill(disk, 0)
        r = _cli("tune", str(tiny_moe), "--budget", "60", "--dimensions", "flash_attn", "--max-probes", "1",
                 "-p", "32", "-n", "8", "-r", "3", "--quiet", "--save-config", str(disk / "best.json"))
        assert r.returncode == 2
        assert "run it:" in r.stdout  # the result was shown first
        assert "could not be saved" in r.stderr and "Traceback" not in r.stderr
        assert not (disk / "best.json").exists()
        assert [p.name for p in disk.iterdir() if p.name.endswith(".tmp")] == []


_WRITER = """
import sys
from pathlib import Path
import json
from moetui.paths import atomic_write_text
target = Path(sys.argv[1])
# serialised once, so nearly all of each loop is the write itself (a temp file exists): a kill that lands
# between writes proves nothing, and on a busy CI machine 40 of 40 did once
text = json.dumps(["x" * 1000] * 2000)
print("go", flush=True)
while True:
    atomic_write_text(target, text)
"""


def test_sigkill_mid_write_leaves_no_lasting_temp_files(tmp_path: Path) -> None:
    """Defect 11: SIGKILL during an atomic write left orphan .tmp files (8 of 40 kills) nothing removed."""
    target = tmp_path / "state" / "profile.json"
    target.parent.mkdir()
    kills = orphaned = 0
    for i in range(200):
        if kills >= 40 and orphaned > 0:
            break
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert p.stdout.readline().strip() == "go"
        time.sleep(0.02 + (i % 7) * 0.013)
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        if target.exists():
            json.loads(target.read_text())  # what is there is whole
        orphaned += any(f.name.endswith(".tmp") for f in target.parent.iterdir())
    atomic_write_json(target, {"ok": True})  # the next write tidies up after the dead writers
    assert [f for f in target.parent.iterdir() if f.name.endswith(".tmp")] == []
    assert json.loads(target.read_text()) == {"ok": True}
    assert kills >= 40 and orphaned > 0  # the kills did land mid-write


def test_a_live_writers_temp_file_is_left_alone(tmp_path: Path) -> None:
    live = tmp_path / f".other.json.{os.getppid()}.abcdefgh.tmp"  # the pytest runner's parent: alive
    live.write_text("in progress")
    dead = tmp_path / ".other.json.999999999.abcdefgh.tmp"
    dead.write_text("orphan")
    atomic_write_json(tmp_path / "x.json", 1)
    assert live.exists() and not dead.exists()
