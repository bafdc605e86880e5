"""`moetui rpc-server`: the vendored llama.cpp's ggml-rpc-server, started with a memory cap (the kernel's
RLIMIT_DATA) and its tensor cache, answering the RPC protocol; stopping moetui stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from moetui.hardware.rpc import preflight
from moetui.export.rpc_server import RpcServerSettings, data_limit, rpc_server_binary

from rpc_helpers import MIB, free_port


def test_rpc_server_command_runs_capped_with_its_cache(tmp_path: Path) -> None:
    binary = rpc_server_binary()
    port = free_port()
    args = [sys.executable, "-m", "moetui", "rpc-server", "--port", str(port), "--mem", "40MiB", "--threads", "1",
            "--cache-dir", str(tmp_path / "cache")]
    shown = subprocess.run([*args, "--print-command"], capture_output=True, text=True, timeout=60, check=True).stdout
    limit = data_limit(RpcServerSettings(mem_bytes=40 * MIB, threads=1))
    assert shown.strip() == (f"ulimit -d {limit // 1024} && LLAMA_CACHE={tmp_path / 'cache'} {binary} "
                             f"-H 127.0.0.1 -p {port} -t 1 -c")
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert f"listening on 127.0.0.1:{port}" in line and "capped at 40MiB" in line and "tensor cache on" in line
        assert preflight(f"127.0.0.1:{port}").n_devices == 1
        (child,) = psutil.Process(proc.pid).children()
        assert child.exe() == str(binary)
        assert child.rlimit(psutil.RLIMIT_DATA) == (limit, limit)
        assert (tmp_path / "cache" / "rpc").is_dir()  # ggml-rpc-server -c made its cache there
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        deadline = time.monotonic() + 10
        while child.is_running() and child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "moetui", "rpc-server", "--port", str(port)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert p.returncode == 2 and f"127.0.0.1:{port}" in p.stderr and "already listens" in p.stderr
