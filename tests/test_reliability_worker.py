"""Issue 19, defects 12 and 13, and worker faults: a SIGKILL, an abort or a stall of the worker while it
loads, generates or measures (what a tune probe runs) is reported as that, the parent carries on and no
process is left; Ctrl-C with a hung worker returns in seconds on one press; model output cannot put
terminal control bytes on the user's terminal."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from moetui.config import RunConfig
from moetui.errors import WorkerError
from moetui.runtime.client import ErrorEvent, ModelWorker, collect

FAULTS = {"SIGKILL": (signal.SIGKILL, "crash", "killed by SIGKILL"),
          "SIGABRT": (signal.SIGABRT, "crash", "aborted"),
          "stall": (signal.SIGSTOP, "hang", "no progress")}


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _worker_procs() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "worker_main" in " ".join(p.cmdline())]


def _signal_when(ready: threading.Event, sig: int, delay: float, hit: list[psutil.Process]) -> threading.Thread:
    def run() -> None:
        ready.wait(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            procs = [p for p in _worker_procs() if _alive(p)]
            if procs:
                time.sleep(delay)
                for p in procs:
                    p.send_signal(sig)
                hit.extend(procs)
                return
            time.sleep(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("phase", ["load", "generate", "bench"])
def test_worker_fault_is_reported_as_what_it_was(phase: str, fault: str, tiny_moe: Path) -> None:
    sig, kind, words = FAULTS[fault]
    w = ModelWorker(stall_timeout=3.0, load_timeout=4.0 if fault == "stall" else 60.0)
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=4096, n_threads=1, n_threads_batch=1)
    ready, hit = threading.Event(), []
    if phase == "load":
        ready.set()
        # the tiny proxy loads in about 0.2 s: the fault comes as soon as the worker process exists
        _signal_when(ready, sig, 0.0, hit)
        with pytest.raises(WorkerError) as info:
            w.start(cfg)
        err = info.value
    else:
        w.start(cfg)
        _signal_when(ready, sig, 0.5, hit)
        if phase == "generate":
            events = []
            for ev in w.generate("the", max_tokens=100_000):
                events.append(ev)
                ready.set()
            assert isinstance(events[-1], ErrorEvent)
            err = events[-1].error
        else:
            ready.set()
            with pytest.raises(WorkerError) as info:
                w.bench(n_prompt=256, n_gen=64, reps=200)
            err = info.value
    assert hit, "the fault was never injected"
    assert err.kind == kind, str(err)
    assert words in str(err), str(err)
    assert not w.alive
    time.sleep(0.3)
    assert not [p for p in hit if _alive(p)], "a worker outlived its fault"
    # the parent carries on: a new worker loads and answers
    w2 = ModelWorker(stall_timeout=60)
    try:
        w2.start(cfg)
        assert collect(w2.generate("the", max_tokens=4)).text is not None
    finally:
        w2.close()


def test_ctrl_c_with_a_hung_worker_returns_on_one_press(tiny_moe: Path) -> None:
    """Defect 12: with a hung worker Ctrl-C took three presses and up to 300 s."""
    p = subprocess.Popen([sys.executable, "-m", "moetui", "run", str(tiny_moe), "-c", "2048"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None and p.stdin is not None
        line = ""
        t0 = time.monotonic()
        while "[loaded" not in line and time.monotonic() - t0 < 60:
            line = p.stderr.readline()
        workers = [c for c in psutil.Process(p.pid).children(recursive=True) if "worker_main" in " ".join(c.cmdline())]
        assert workers
        for w in workers:
            w.send_signal(signal.SIGSTOP)  # hung: no token, no reply to cancel
        p.stdin.write("hello\n")
        p.stdin.flush()
        time.sleep(1.0)
        t_int = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=40)
        took = time.monotonic() - t_int
    finally:
        if p.poll() is None:
            p.kill()
    assert took < 20, err
    assert p.returncode == 2, err
    assert "did not stop" in err and "Traceback" not in err
    time.sleep(0.3)
    assert not [w for w in workers if _alive(w)]


def test_cancel_of_a_hung_request_kills_it_within_the_grace(tiny_moe: Path) -> None:
    from moetui.runtime.client import CANCEL_GRACE_S

    w = ModelWorker(stall_timeout=300)
    w.start(RunConfig(model_path=str(tiny_moe), n_ctx=256))
    threading.Timer(0.5, w.stop).start()
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match="did not stop") as info:
        w.debug("debug_sleep", seconds=600)  # the worker's main thread never looks at the cancel
    assert info.value.kind == "hang" and time.monotonic() - t0 < CANCEL_GRACE_S + 5
    assert not w.alive
    w.close()


def test_model_output_control_bytes_never_reach_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 13: model output could carry raw terminal escape bytes (CLI `run`)."""
    from moetui.cli.run_cmd import _StatsPrinter, _stream
    from moetui.runtime.client import TokenEvent

    hostile = ["\x1b]0;owned\x07", "\x1b[2J\x1b[H", "ok\tfine\n", "\x9b31m", "\r\x08\x00", "模型 ☃"]
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    text = _stream(None, iter([TokenEvent(t) for t in hostile]), _StatsPrinter(False))
    shown = out.getvalue()
    assert text == "".join(hostile)  # the chat history keeps what the model said
    for bad in ("\x1b", "\x07", "\x9b", "\r", "\x08", "\x00"):
        assert bad not in shown
    assert "ok\tfine\n" in shown and "模型 ☃" in shown and "owned" in shown
