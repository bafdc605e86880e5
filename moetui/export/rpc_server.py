"""Start llama.cpp's `ggml-rpc-server` (built from the vendored sources, moetui.export.llama_tools variant
"rpc") with a memory cap and its tensor cache.

The binary's own flags (tools/rpc/rpc-server.cpp of the vendored llama.cpp): -H host, -p port,
-t threads, -d devices, -c (local file cache in $LLAMA_CACHE/rpc, default ~/.cache/llama.cpp/rpc).
It has no memory flag, so the cap is the kernel's: RLIMIT_DATA on the child (Linux counts private
writable mappings, which is where ggml's buffers live), with SERVER_SLACK on top for the server's own
threads and heap. An allocation past the cap fails; llama.cpp's load then fails naming the RPC buffer.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from moetui.hardware.rpc import RpcEndpoint, RpcServerError, alive
from moetui.export.llama_tools import ensure_llama_tools

RPC_SERVER_BINARY = "ggml-rpc-server"
# the server process beyond its buffers: an idle ggml-rpc-server has about 1 MiB of private writable
# data (VmData); each compute thread adds its 8 MiB stack
SERVER_SLACK = 32 * 1024 * 1024
THREAD_STACK = 8 * 1024 * 1024
START_TIMEOUT_S = 30.0


def rpc_server_binary(out: TextIO | None = sys.stderr) -> Path:
    """The ggml-rpc-server of the installed llama-cpp-python's llama.cpp, built once (minutes)."""
    return ensure_llama_tools([RPC_SERVER_BINARY], variant="rpc", out=out) / RPC_SERVER_BINARY


@dataclass
class RpcServerSettings:
    host: str = "127.0.0.1"
    port: int = 50052
    mem_bytes: int | None = None  # the cap; None: unlimited
    cache: bool = True
    cache_dir: str | None = None  # None: llama.cpp's default (~/.cache/llama.cpp, + /rpc)
    threads: int | None = None
    devices: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> RpcEndpoint:
        return RpcEndpoint(self.host, self.port, self.mem_bytes)


def server_argv(binary: Path | str, s: RpcServerSettings) -> list[str]:
    argv = [str(binary), "-H", s.host, "-p", str(s.port)]
    if s.threads:
        argv += ["-t", str(s.threads)]
    if s.devices:
        argv += ["-d", ",".join(s.devices)]
    if s.cache:
        argv.append("-c")
    return argv


def server_env(s: RpcServerSettings) -> dict[str, str]:
    env = dict(os.environ)
    if s.cache_dir:
        env["LLAMA_CACHE"] = s.cache_dir  # the server keeps its cache in $LLAMA_CACHE/rpc
    return env


def data_limit(s: RpcServerSettings) -> int | None:
    """The RLIMIT_DATA given to the server: the cap plus what the process itself needs."""
    if s.mem_bytes is None:
        return None
    threads = s.threads or max(1, (os.cpu_count() or 2) // 2)  # the server's default: half the cores
    return s.mem_bytes + SERVER_SLACK + threads * THREAD_STACK


def _limit(cap: int | None):  # type: ignore[no-untyped-def]
    if cap is None:
        return None

    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    return apply


def start_rpc_server(s: RpcServerSettings, binary: Path | str | None = None, log: Path | None = None,
                     timeout: float = START_TIMEOUT_S) -> subprocess.Popen[bytes]:
    """Start the server and wait until it accepts connections. Raises RpcServerError naming the
    endpoint when it exits first (port taken, unknown device) or does not listen within `timeout`."""
    binary = binary or rpc_server_binary()
    addr = s.endpoint.address
    if alive(addr, timeout=0.5):
        raise RpcServerError(addr, "something already listens there (another rpc-server?); pick another --port")
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(server_argv(binary, s), stdout=out, stderr=subprocess.STDOUT, env=server_env(s),
                                preexec_fn=_limit(data_limit(s)), start_new_session=True)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log else []
            raise RpcServerError(addr, f"ggml-rpc-server exited at start (code {proc.returncode})"
                                       + (f": {tail[0]}" if tail else ""))
        if alive(addr, timeout=0.2):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RpcServerError(addr, f"ggml-rpc-server did not listen within {timeout:g} s")
