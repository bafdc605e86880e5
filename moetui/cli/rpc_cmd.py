"""`moetui rpc-server`: build llama.cpp's ggml-rpc-server (once, from the sources llama-cpp-python
vendors) and run it on this host with a memory cap and its tensor cache, so another machine can place
layers here with `moetui detect --rpc`, `moetui run --rpc` or llama.cpp's own `--rpc`."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

from moetui.hardware.rpc import parse_size
from moetui.export.rpc_server import (
    RpcServerSettings, data_limit, rpc_server_binary, server_argv, start_rpc_server,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; the RPC protocol has no authentication: "
                             "only a trusted LAN address)")
    parser.add_argument("--port", type=int, default=50052, help="TCP port (default 50052)")
    parser.add_argument("--mem", metavar="SIZE", help="memory cap for the model parts it holds, e.g. 24GiB "
                        "(enforced by the kernel; tell the planner the same: --rpc HOST:PORT=SIZE)")
    parser.add_argument("--no-cache", action="store_true", help="without the tensor cache (-c): every load resends all weights")
    parser.add_argument("--cache-dir", metavar="DIR", help="where the tensor cache lives (default ~/.cache/llama.cpp/rpc)")
    parser.add_argument("--threads", type=int, help="CPU threads of a CPU server (default: half the cores)")
    parser.add_argument("--device", action="append", default=[], metavar="DEV",
                        help="expose only this ggml device (CUDA0, ...; repeatable; default all accelerators, else the CPU)")
    parser.add_argument("--build-only", action="store_true", help="build the binary, print its path and exit")
    parser.add_argument("--print-command", action="store_true", help="print the command that would run, and exit")


def run(args: argparse.Namespace) -> int:
    binary = rpc_server_binary()
    if args.build_only:
        print(binary)
        return 0
    s = RpcServerSettings(host=args.host, port=args.port, mem_bytes=parse_size(args.mem) if args.mem else None,
                          cache=not args.no_cache, cache_dir=args.cache_dir, threads=args.threads, devices=args.device)
    if args.print_command:
        env = f"LLAMA_CACHE={shlex.quote(s.cache_dir)} " if s.cache_dir else ""
        limit = data_limit(s)
        cap = f"ulimit -d {limit // 1024} && " if limit else ""
        print(f"{cap}{env}{shlex.join(server_argv(binary, s))}")
        return 0
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"moetui: warning: {args.host} is reachable from the network and ggml-rpc-server has no "
              "authentication: use it on a trusted LAN only", file=sys.stderr)
    proc = start_rpc_server(s, binary)
    print(f"ggml-rpc-server listening on {s.endpoint.address} (pid {proc.pid}"
          + (f", capped at {args.mem}" if args.mem else "") + (", tensor cache on" if s.cache else "") + ")", file=sys.stderr)
    print(f"on the main host: moetui detect --rpc {s.endpoint.spec()}    (llama.cpp: --rpc {s.endpoint.address})",
          file=sys.stderr)
    stopped = []

    def stop(*_: object) -> None:
        stopped.append(True)
        proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(10)
        return 130
    if stopped:
        return 0
    print(f"moetui: error: ggml-rpc-server {s.endpoint.address} exited with code {rc}", file=sys.stderr)
    return 2 if rc else 0
