"""llama.cpp's RPC client, through ctypes on the libggml that llama-cpp-python loaded.

`register_servers()` does what llama.cpp's `--rpc` does (common/arg.cpp add_rpc_devices): looks the RPC
backend up by name, takes `ggml_backend_rpc_add_server` from it and registers each server's backend, so
its devices (RPC0, RPC1, ...; buffer types "RPC<i>[host:port]") join the device list a model load
places layers and `-ot` overrides on. It must run before the load, in the process that loads (the
worker). `device_memory()` is `ggml_backend_rpc_get_device_memory`, the protocol's memory query.

libggml aborts the process when a server is unreachable, so every endpoint passes
moetui.hardware.rpc.preflight() first, and the app process itself never calls in here: `probe()` runs
`python -m moetui.runtime.rpc_ctypes ENDPOINT...` in a child and reads its JSON.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from dataclasses import asdict
from typing import Any

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

from moetui.errors import llama_abort_reason
from moetui.hardware.net_limits import net_limits
from moetui.hardware.rpc import (RemoteDevice, RpcEndpoint, RpcServerError, check_device_memory, parse_endpoints,
                                 preflight)
from moetui.runtime.overrides_ctypes import loaded_library

# the query child's address space beyond what Python and libggml (CUDA's libraries included) took at start:
# an honest memory query needs a few MB of it, a thread's stack 8 MB
PROBE_HEADROOM_BYTES = 1 << 30

_api: dict[str, Any] | None = None
_registered: dict[str, list[RemoteDevice]] = {}


def _lib() -> dict[str, Any]:
    global _api
    if _api is None:
        import llama_cpp  # noqa: F401, PLC0415 - loads libllama and, with it, the ggml the loads use

        lib = ctypes.CDLL(loaded_library("libggml"))
        base = ctypes.CDLL(loaded_library("libggml-base"))
        vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        for fn, args, res in ((lib.ggml_backend_reg_by_name, [cp], vp), (lib.ggml_backend_register, [vp], None),
                              (lib.ggml_backend_load_all, [], None),
                              (base.ggml_backend_reg_get_proc_address, [vp, cp], vp),
                              (base.ggml_backend_reg_dev_count, [vp], sz), (base.ggml_backend_reg_dev_get, [vp, sz], vp),
                              (base.ggml_backend_dev_name, [vp], cp), (base.ggml_backend_dev_buffer_type, [vp], vp),
                              (base.ggml_backend_buft_name, [vp], cp)):
            fn.argtypes, fn.restype = args, res
        lib.ggml_backend_load_all()  # a GGML_BACKEND_DL build registers RPC only here; harmless otherwise
        reg = lib.ggml_backend_reg_by_name(b"RPC")
        if not reg:
            raise RpcServerError(None, "this llama-cpp-python has no RPC backend: reinstall it with "
                                          "CMAKE_ARGS=\"-DGGML_RPC=on\" (see the README)")

        rpc_so = loaded_library("libggml-rpc")
        rpc = ctypes.CDLL(rpc_so) if os.path.exists(rpc_so) else None

        def proc(name: str, restype: Any, argtypes: list[Any]) -> Any:
            # the registry hands out add_server (what llama.cpp's --rpc uses); the rest of ggml-rpc.h's
            # API is exported by libggml-rpc itself
            addr = base.ggml_backend_reg_get_proc_address(reg, name.encode())
            if not addr and rpc is not None and hasattr(rpc, name):
                addr = ctypes.cast(getattr(rpc, name), ctypes.c_void_p).value
            if not addr:
                raise RpcServerError(None, f"the RPC backend of this llama-cpp-python has no {name}")
            return ctypes.CFUNCTYPE(restype, *argtypes)(addr)

        _api = {
            "lib": lib, "base": base,
            "add_server": proc("ggml_backend_rpc_add_server", vp, [cp]),
            "get_device_memory": proc("ggml_backend_rpc_get_device_memory", None,
                                      [cp, ctypes.c_uint32, ctypes.POINTER(sz), ctypes.POINTER(sz)]),
        }
    return _api


def device_memory(address: str, device: int) -> tuple[int, int]:
    """(free, total) bytes of device `device` on the server at `address`, as the server reports them."""
    api = _lib()
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    api["get_device_memory"](address.encode(), device, ctypes.byref(free), ctypes.byref(total))
    return free.value, total.value


def register_servers(endpoints: list[RpcEndpoint] | str) -> list[RemoteDevice]:
    """Register every server's devices with ggml (idempotent per endpoint); their RemoteDevices, in
    registration order, which is llama.cpp's device order for -ts (RPC devices come first)."""
    eps = parse_endpoints(endpoints) if isinstance(endpoints, str) else endpoints
    api = _lib()
    out: list[RemoteDevice] = []
    for ep in eps:
        if ep.address in _registered:
            out += _registered[ep.address]
            continue
        pre = preflight(ep)  # raises, naming the host, before libggml could abort on it
        reg = api["add_server"](ep.address.encode())
        if not reg:
            raise RpcServerError(ep.address, "the RPC backend could not add it (no devices)")
        api["lib"].ggml_backend_register(reg)
        devs = []
        for i in range(api["base"].ggml_backend_reg_dev_count(reg)):
            dev = api["base"].ggml_backend_reg_dev_get(reg, i)
            buft = api["base"].ggml_backend_dev_buffer_type(dev)
            free, total = device_memory(ep.address, i)
            check_device_memory(ep.address, i, free, total)
            devs.append(RemoteDevice(
                endpoint=ep.address, index=i,
                buffer_type=api["base"].ggml_backend_buft_name(buft).decode() if buft else "",
                backend="CPU" if free == total else "accelerator",
                memory_free_bytes=free, memory_total_bytes=total, limit_bytes=ep.limit_bytes,
                protocol=pre.protocol, rtt_s=pre.rtt_s,
            ))
        _registered[ep.address] = devs
        out += devs
    return out


def probe_timeout_s() -> float:
    """The query child's time: starting Python and libggml (a few seconds on a busy machine) plus a network
    step's deadline (MOETUI_NET_TIMEOUT) for each of its two requests."""
    return 10.0 + 2 * net_limits().total_s


def _cap_self() -> None:
    """In the query child, once libggml is loaded and before any server is asked: a server claiming absurd
    counts makes libggml allocate what it is told; the cap (what the child holds now, plus
    PROBE_HEADROOM_BYTES) turns that into an allocation failure of this child, not the machine's memory."""
    if resource is None:  # not POSIX: the child runs uncapped (its time limit still holds)
        return
    try:
        with open("/proc/self/statm") as fh:
            held = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return  # no /proc (macOS, where RLIMIT_AS is not enforced anyway)
    cap = held + PROBE_HEADROOM_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def probe(endpoints: list[RpcEndpoint] | str, timeout: float | None = None) -> list[RemoteDevice]:
    """Ask each server for its devices and memory, in a child process (libggml may abort), capped in
    memory (_cap_self) and time. Raises RpcServerError naming the host that failed, in moetui's words."""
    eps = parse_endpoints(endpoints) if isinstance(endpoints, str) else endpoints
    timeout = probe_timeout_s() if timeout is None else timeout
    # the clear error for down/refusing/busy servers, without paying for the child; and the round trip
    # measured from this process, not from a child still warming up
    rtts = {ep.address: preflight(ep).rtt_s for ep in eps}
    # the child needs no GPU: none is initialised for it
    env = dict(os.environ, GGML_NO_BACKTRACE="1", CUDA_VISIBLE_DEVICES="", HIP_VISIBLE_DEVICES="")
    names = ",".join(e.address for e in eps)
    try:
        p = subprocess.run([sys.executable, "-m", "moetui.runtime.rpc_ctypes", *(e.spec() for e in eps)],
                           capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise RpcServerError(names, f"the memory query got no full answer within {timeout:g} s and was stopped "
                                    "(a server that stalls, or claims more devices or memory than exist)") from None
    if p.returncode != 0:
        failed = next((e.address for e in eps if e.address in (p.stderr or "")), names)
        raise RpcServerError(failed, f"the memory query failed: {_child_failure(p)}")
    try:
        devices = [RemoteDevice(**d) for d in json.loads(p.stdout)]
    except (ValueError, TypeError) as exc:
        raise RpcServerError(names, f"the memory query gave no readable answer ({exc})") from None
    for d in devices:
        d.rtt_s = rtts.get(d.endpoint, d.rtt_s)
    return devices


def _child_failure(p: subprocess.CompletedProcess[str]) -> str:
    """Why the query child failed, in moetui's words (never libggml's source paths)."""
    err = p.stderr or ""
    if p.returncode == 2:  # main() printed a RpcServerError: moetui's own words already
        return ([ln for ln in err.splitlines() if ln.strip()][-1:] or ["no reason given"])[0].split(": ", 1)[-1]
    if "MemoryError" in err or "bad_alloc" in err or p.returncode == -9:
        return (f"it ran out of its memory cap ({PROBE_HEADROOM_BYTES >> 30} GiB beyond libggml's own; the server "
                "claimed sizes or counts far beyond a real one)")
    return llama_abort_reason(err) or f"the query process ended with code {p.returncode}"


def main(argv: list[str]) -> int:
    try:
        _lib()  # libggml and its backends loaded first: the cap counts from there
        _cap_self()
        devices = register_servers(parse_endpoints(argv))
    except RpcServerError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps([asdict(d) for d in devices]))
    return 0


if __name__ == "__main__":  # python -m moetui.runtime.rpc_ctypes host:port[=cap] ...
    sys.exit(main(sys.argv[1:]))
