"""`moetui tune` as a user runs it: real subprocesses, real workers, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from moetui.tuner import ProfileStore

QUICK = ["-p", "32", "-n", "8", "-r", "3"]


def moetui(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _profiles() -> list[Path]:
    return sorted((Path(os.environ["MOETUI_DATA_DIR"]) / "profiles").glob("*.json"))


def test_tune_json_then_the_saved_profile_at_once(tiny_moe, tmp_path):
    r = moetui("tune", str(tiny_moe), "--json", "--budget", "60", "--dimensions", "flash_attn", "--max-probes", "2",
               "--save-config", str(tmp_path / "best.json"), *QUICK)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["from_cache"] is False and d["objective"] == "turn" and len(d["probes"]) == 2
    assert d["workload"]["name"] == "chat" and d["probes"][d["best"]]["turn_s"] > 0
    best = d["probes"][d["best"]]
    assert best["status"] == "ok" and best["bench"]["tg_median"] > 0
    assert json.loads((tmp_path / "best.json").read_text()) == best["config"]  # ready for `moetui run --config`
    assert len(_profiles()) == 1
    start = time.monotonic()
    r2 = moetui("tune", str(tiny_moe), *QUICK)
    assert r2.returncode == 0, r2.stderr
    assert time.monotonic() - start < 20  # no probing: the saved profile
    assert "saved profile" in r2.stdout and "run it: moetui run" in r2.stdout and "status" in r2.stdout
    # seconds per turn beside prompt and decode speed, for the winner and for llama.cpp's defaults
    assert "s/turn, pp" in r2.stdout and "best for turn for chat: 2,048 new prompt tokens" in r2.stdout


def test_bad_input_is_one_line_and_exit_2(tiny_moe, tmp_path):
    for args, words in ((["tune", str(tmp_path / "nope.gguf")], "no such model file"),
                        (["tune", str(tiny_moe), "--dimensions", "warp"], "unknown tuning dimension"),
                        (["tune", str(tiny_moe), "--budget", "0"], "budget must be positive"),
                        (["tune", str(tiny_moe), "-r", "2"], "reps must be >= 3"),
                        (["tune", str(tiny_moe), "--rig", "rtx-4090"], "--rig must be 'auto'"),
                        (["tune", str(tiny_moe), "--workload", "lunch"], "unknown workload 'lunch'")):
        r = moetui(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert words in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def _start_tune(model: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "moetui", "tune", str(model), "--retune", "--budget", "300",
                             "-p", "256", "-n", "32", "-r", "3", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_probe(proc: subprocess.Popen[str], n: int, timeout: float = 120) -> list[str]:
    """Read progress lines from stderr until probe n has started."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if not line:
            break
        lines.append(line)
        if line.startswith(f"[{n}]"):
            return lines
    raise AssertionError(f"the tune never got to probe {n}: {''.join(lines)}")


def _workers(pid: int) -> list[psutil.Process]:
    out = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if "worker_main" in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:  # gone, or a zombie not yet reaped
            pass
    return out


def test_a_killed_tune_leaves_the_store_intact(tiny_moe):
    r = moetui("tune", str(tiny_moe), "--budget", "60", "--dimensions", "flash_attn", "--max-probes", "2", *QUICK)
    assert r.returncode == 0, r.stderr
    [path] = _profiles()
    before = path.read_bytes()
    proc = _start_tune(tiny_moe, "--dimensions", "threads,ubatch,flash_attn")
    _wait_for_probe(proc, 3)
    workers = _workers(proc.pid)
    proc.kill()  # SIGKILL: no cleanup code runs in the tune
    proc.wait(10)
    assert path.read_bytes() == before and _profiles() == [path]
    assert not list(path.parent.rglob("*.tmp"))
    assert ProfileStore().get(*_key(before)) is not None
    # the worker notices its parent is gone and exits by itself
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive


def _key(raw: bytes) -> tuple[str, str, str]:
    d = json.loads(raw)
    return d["rig_fingerprint"], d["model_id"], d["llama_version"]


def test_ctrl_c_keeps_the_best_so_far(tiny_moe):
    proc = _start_tune(tiny_moe, "--dimensions", "threads,ubatch,flash_attn")
    _wait_for_probe(proc, 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "cancelled" in out and "run it:" in out
    [path] = _profiles()
    d = json.loads(path.read_text())
    assert d["stopped"] == "cancelled" and d["probes"][d["best"]]["status"] == "ok"


def test_a_crashing_probe_is_recorded_and_the_tune_goes_on(tiny_moe):
    proc = _start_tune(tiny_moe, "--dimensions", "threads,flash_attn")
    _wait_for_probe(proc, 2)
    time.sleep(0.1)
    for w in _workers(proc.pid):
        w.kill()  # what the kernel's OOM killer does to a worker
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    [path] = _profiles()
    d = json.loads(path.read_text())
    # the kill lands on a candidate (failed, remembered) or on the incumbent's re-measurement (the
    # comparison is interrupted and says why): either way the crash is named and the tune goes on
    failed = [p for p in d["probes"] if p["status"] in ("failed", "skipped") and "SIGKILL" in (p.get("error") or "")]
    assert failed, [(p["label"], p["status"], p.get("error")) for p in d["probes"]]
    assert any(p["status"] == "ok" and p["index"] > failed[0]["index"] for p in d["probes"])
    if failed[0]["status"] == "failed":
        assert failed[0]["error_kind"] == "crash"
        fails = list((path.parent / "failed").rglob("*.json"))
        assert len(fails) == 1 and json.loads(fails[0].read_text())["kind"] == "crash"


def test_export_and_run_use_the_tuned_profile(tiny_moe):
    r = moetui("tune", str(tiny_moe), "--json", "--budget", "60", "--dimensions", "threads", "--max-probes", "3", *QUICK)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    best = d["probes"][d["best"]]["config"]
    e = moetui("export", str(tiny_moe), "--tool", "config", "--json")
    assert e.returncode == 0, e.stderr
    assert "using the tuned profile" in e.stderr
    exported = json.loads(e.stdout)["config"]
    assert exported == best
    g = moetui("run", str(tiny_moe), "-p", "Hello", "-n", "4", "--temp", "0")
    assert g.returncode == 0, g.stderr
    assert "using the tuned profile" in g.stderr
    u = moetui("run", str(tiny_moe), "-p", "Hello", "-n", "4", "--temp", "0", "--untuned")
    assert u.returncode == 0 and "tuned profile" not in u.stderr
