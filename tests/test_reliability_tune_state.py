"""Issue 19: tunes under stress. Two tunes of the same model at once, and a tune interrupted with SIGINT
or SIGKILL at each stage (starting, first load, probing, later probes): the saved profile is the old one or
a whole new one, never half of one; no temp file and no worker outlives it; SIGINT keeps the best so far."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from moetui.tuner import ProfileStore

TUNE = ["--retune", "--budget", "120", "--dimensions", "threads,ubatch,flash_attn", "-p", "64", "-n", "16", "-r", "3"]


def _profiles() -> list[Path]:
    return sorted((Path(os.environ["MOETUI_DATA_DIR"]) / "profiles").glob("*.json"))


def _workers(pid: int) -> list[psutil.Process]:
    out = []
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return out
    for c in kids:
        try:
            if "worker_main" in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:
            pass
    return out


def _store_is_whole() -> None:
    for p in _profiles():
        d = json.loads(p.read_text())  # whole JSON
        assert ProfileStore().get(d["rig_fingerprint"], d["model_id"], d["llama_version"]) is not None
    assert not list((Path(os.environ["MOETUI_DATA_DIR"]) / "profiles").rglob("*.tmp")) if _profiles() else True


def test_two_tunes_of_the_same_model_at_once(tiny_moe: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "moetui", "tune", str(tiny_moe), *TUNE, "--max-probes", "3", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert json.loads(out)["probes"]
    [path] = _profiles()  # one key, one file: the later rename won, whole
    _store_is_whole()
    created = {json.loads(out)["created"] for out, _ in outs}
    assert json.loads(path.read_text())["created"] in created


@pytest.fixture(scope="module")
def earlier_profile(tiny_moe: Path) -> tuple[str, bytes]:
    """One quick tune's saved profile (file name, bytes), put in place before each interrupted tune."""
    r = subprocess.run([sys.executable, "-m", "moetui", "tune", str(tiny_moe), *TUNE, "--max-probes", "1", "--quiet"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    [path] = _profiles()
    return path.name, path.read_bytes()


STAGES = {"starting": 0.8, "first load": 2.0, "probing": 5.0, "later probes": 9.0}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_tune_interrupted_at_every_stage(stage: str, sig: int, tiny_moe: Path, earlier_profile: tuple[str, bytes]) -> None:
    # a profile from an earlier tune, which a killed tune must leave as it was
    name, before = earlier_profile
    path = Path(os.environ["MOETUI_DATA_DIR"]) / "profiles" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(before)
    proc = subprocess.Popen([sys.executable, "-m", "moetui", "tune", str(tiny_moe), *TUNE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(STAGES[stage])
    workers = _workers(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    if sig == signal.SIGKILL:
        # nothing half-written, nothing lost: the old profile, or a whole new one the tune saved before the kill
        assert path.read_bytes() == before or json.loads(path.read_text())["probes"]
    else:
        # best so far kept (0), or nothing measured yet: said so (2), or still starting up (130), or the
        # interrupt landed while the interpreter was already shutting down (-2: its default handler)
        assert proc.returncode in (0, 2, 130, -signal.SIGINT), err
        if proc.returncode == 2:
            assert "stopped before any configuration was measured" in err, err
        if proc.returncode == 0:
            assert "run it:" in out
            assert json.loads(path.read_text())["stopped"] in ("cancelled", "converged", "budget", "exhausted")
        else:
            assert path.read_bytes() == before
    _store_is_whole()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "a worker outlived the tune"
