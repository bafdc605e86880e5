"""An RPC server that is down, refuses (not an rpc-server, or busy with another client), or dies mid-run:
a one-line error naming the host, and the caller (the app) carries on."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from moetui.config import RunConfig
from moetui.errors import MoetuiError
from moetui.hardware.rpc import RpcServerError, preflight
from moetui.runtime.client import DoneEvent, ErrorEvent, ModelWorker, TokenEvent, collect
from moetui.runtime.rpc_ctypes import probe
from moetui.export.rpc_server import rpc_server_binary

from conftest import repack_ok
from rpc_helpers import free_port, rpc_servers


@pytest.fixture(scope="module", autouse=True)
def _binary() -> None:
    rpc_server_binary()


def _cfg(model: Path, servers: list[str], ngl: int) -> RunConfig:
    return RunConfig(model_path=str(model), n_ctx=512, n_threads=1, n_batch=64, n_ubatch=64, repack=repack_ok(),
                     rpc_servers=servers, n_gpu_layers=ngl)


def test_a_server_that_is_down_is_named(tiny_moe: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    with pytest.raises(RpcServerError, match=rf"rpc-server {addr}: connection refused"):
        preflight(addr)
    with pytest.raises(MoetuiError, match=rf"rpc-server {addr}: connection refused"), ModelWorker() as w:
        w.start(_cfg(tiny_moe, [addr], 99))
    p = subprocess.run([sys.executable, "-m", "moetui", "detect", "--no-bandwidth", "--rpc", addr],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and addr in p.stderr, p.stderr


def _listener(handle) -> tuple[str, socket.socket]:  # type: ignore[no-untyped-def]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            handle(conn)

    threading.Thread(target=loop, daemon=True).start()
    return f"127.0.0.1:{srv.getsockname()[1]}", srv


@pytest.mark.parametrize(("reply", "says"), [
    (b"", "not a compatible ggml-rpc-server"),  # accepts, then hangs up
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a compatible ggml-rpc-server"),  # some other service
    (struct.pack("<Q", 28) + bytes([6, 1, 0, 0]) + bytes(24), r"speaks RPC protocol 6\.1\.0; .* needs 7\.x"),
])
def test_a_server_that_refuses_or_speaks_something_else_is_named(reply: bytes, says: str) -> None:
    def handle(conn: socket.socket) -> None:
        conn.recv(64)
        conn.sendall(reply)
        conn.close()

    addr, srv = _listener(handle)
    try:
        with pytest.raises(RpcServerError, match=rf"rpc-server {addr}: {says}"):
            probe(addr)
    finally:
        srv.close()


def test_a_busy_server_is_named_not_waited_for(tiny_moe: Path, tmp_path: Path) -> None:
    with rpc_servers(tmp_path, n=1, cap=None) as procs:
        addr = procs[0][0]
        with ModelWorker() as w:
            w.start(_cfg(tiny_moe, [addr], 99))  # holds the server's only client slot
            t0 = time.monotonic()
            with pytest.raises(RpcServerError, match=rf"rpc-server {addr}: .*busy"):
                probe(addr)
            assert time.monotonic() - t0 < 10


def test_a_server_dying_mid_run_is_named_and_the_app_carries_on(tiny_moe: Path, tmp_path: Path) -> None:
    with rpc_servers(tmp_path, n=2, cap=None) as procs:
        addrs = [a for a, _ in procs]
        with ModelWorker() as w:
            w.start(_cfg(tiny_moe, addrs, 99).replace(tensor_split=[1.0, 1.0]))
            events = []
            for ev in w.generate("Once upon a time", max_tokens=100000, temperature=0.0):
                events.append(ev)
                if sum(isinstance(e, TokenEvent) for e in events) == 5:
                    procs[1][1].kill()  # the second server dies while tokens flow
            assert not any(isinstance(e, DoneEvent) for e in events)
            err = events[-1]
            assert isinstance(err, ErrorEvent) and err.kind == "rpc"
            assert f"rpc-server {addrs[1]} stopped answering" in err.message and addrs[0] not in err.message.split(";")[0]
        # the caller is fine: the same process runs the model on its own next
        with ModelWorker() as w:
            w.start(_cfg(tiny_moe, [], 0))
            assert collect(w.generate("Hello", max_tokens=4)).text

