"""Shared by the RPC tests: real ggml-rpc-server processes on 127.0.0.1 (built once into the shared
tools folder, ~/.cache/moetui/llama-tools-<ver>, whose build has RPC) and a proxy big enough for memory caps to bite."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from moetui.model.proxy import write_proxy
from moetui.model.shapes import load_shape, scaled
from moetui.export.rpc_server import RpcServerSettings, start_rpc_server

MIB = 1 << 20
SERVER_CAP = 40 * MIB  # per server: the proxy below (~95 MB) fits on none alone, on this host + two


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_proxy(path: Path) -> Path:
    """A qwen3-moe proxy of 8 layers, 16 experts of width 768 on n_embd 512: ~12 MB a layer."""
    if not path.exists():
        shape = dataclasses.replace(scaled(load_shape("qwen3-30b-a3b"), "tiny"), name="rpc split proxy", n_layers=8,
                                    n_embd=512, n_expert=16, n_expert_used=2, expert_ffn=768)
        write_proxy(shape, path, "Q4_K_M")
    return path


@contextmanager
def rpc_servers(tmp: Path, n: int = 2, cap: int | None = SERVER_CAP, cache: bool = True) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """n capped servers, each with its own tensor cache folder; yields (address, process) pairs."""
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for i in range(n):
            s = RpcServerSettings(port=free_port(), mem_bytes=cap, cache=cache, cache_dir=str(tmp / f"cache{i}"), threads=1)
            procs.append((s.endpoint.address, start_rpc_server(s, log=tmp / f"rpc-server-{i}.log")))
        yield procs
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
