"""Issue 19, defect 7: non-finite and absurd numbers on the command line give a usage error (exit 2, no
traceback), and `tune --budget` is a hard limit even when a probe hangs."""

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


def moetui(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args", [
    ["plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64", "--vram-budget", "nan"],
    ["plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64", "--vram-budget", "inf"],
    ["plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64", "--vram-budget", "1e300"],
    ["plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64", "--margin", "nan"],
    ["plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64", "--margin=-inf"],
    ["tune", "MODEL", "--budget", "nan"],
    ["tune", "MODEL", "--budget", "inf"],
    ["tune", "MODEL", "--margin", "nan"],
    ["run", "MODEL", "--temp", "nan", "-p", "x"],
    ["run", "MODEL", "--repeat-penalty", "inf", "-p", "x"],
])
def test_non_finite_numbers_are_usage_errors(args: list[str], tiny_moe: Path) -> None:
    r = moetui(*[str(tiny_moe) if a == "MODEL" else a for a in args])
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr
    assert "finite" in r.stderr or "out of range" in r.stderr


def test_nan_budget_is_refused_in_code_too() -> None:
    from moetui.errors import ConfigError
    from moetui.tuner.options import TuneOptions

    with pytest.raises(ConfigError, match="budget"):
        TuneOptions(budget_s=float("nan")).validate()


def test_plan_still_takes_sane_numbers() -> None:
    r = moetui("plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64", "--vram-budget", "12.5", "--margin", "0.25", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rig"]


def test_tune_budget_is_a_hard_limit_when_a_probe_hangs(tiny_moe: Path) -> None:
    """A probe that stops making progress (its worker frozen with SIGSTOP) used to hold the tune for the
    300 s stall timeout, far past --budget; now the tune ends within budget x 1.25 plus the kill."""
    budget = 8.0  # what the tiny model needs at least (the tune refuses a budget too small to measure anything)
    proc = subprocess.Popen([sys.executable, "-m", "moetui", "tune", str(tiny_moe), "--retune", "--budget", str(budget),
                             "-p", "64", "-n", "200", "-r", "3", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    frozen: list[psutil.Process] = []
    try:
        while time.monotonic() - t0 < 60 and not frozen:
            kids = psutil.Process(proc.pid).children(recursive=True)
            workers = [k for k in kids if "worker_main" in " ".join(k.cmdline())]
            if workers:
                time.sleep(1.5)  # let it load and start measuring
                for w in workers:
                    w.send_signal(signal.SIGSTOP)
                frozen = workers
            time.sleep(0.1)
        assert frozen, "no worker started"
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - t0
    assert elapsed < budget * 1.25 + 20, err
    assert "Traceback" not in err
    for w in frozen:
        assert not w.is_running() or w.status() == psutil.STATUS_ZOMBIE  # killed, no orphan
