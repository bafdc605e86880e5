"""Remote devices: llama.cpp `ggml-rpc-server` processes on other hosts, as the rig knows them.

A server is named by its endpoint "host:port". moetui's own spelling may add a memory cap,
"host:port=24GiB": this llama.cpp's ggml-rpc-server has no memory flag, and a CPU server reports its
host's whole RAM as free (ggml's CPU device says free = total), so the cap a user started it with
(`moetui rpc-server --mem`) must be told to the planner; llama.cpp's own `--rpc` gets the bare endpoints.

`preflight()` speaks the first two messages of the RPC protocol (HELLO, DEVICE_COUNT) over a plain
socket with timeouts. Why not libggml for that: its client aborts the whole process when a server is
down, refuses or is busy (GGML_ABORT "Failed to connect", and a server serves one client at a time, so a
second client blocks in HELLO forever). The preflight turns those into a one-line error naming the host
before libggml is asked anything; memory is then read through libggml (moetui.runtime.rpc_ctypes).
"""

from __future__ import annotations

import re
import socket
import struct
import time
from dataclasses import dataclass

from moetui.errors import MoetuiError, RemoteHostError
from moetui.hardware.net_limits import MAX_DEVICE_BYTES, MAX_RPC_DEVICES, ServerClaimError, check_size, net_limits

DEFAULT_PORT = 50052  # ggml-rpc-server's default
RPC_CMD_HELLO = 14
RPC_CMD_DEVICE_COUNT = 15
RPC_CONN_CAPS_SIZE = 24  # ggml-rpc transport.h: the HELLO request carries this many capability bytes
RPC_PROTO_MAJOR = 7  # the vendored ggml-rpc.h: RPC_PROTO_MAJOR_VERSION
PREFLIGHT_TIMEOUT_S = 3.0
RTT_SAMPLES = 5

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class RpcServerError(RemoteHostError):
    """An RPC server that is down, refuses, is busy, speaks another protocol, or died mid-run."""

    def __init__(self, endpoint: str | None, message: str) -> None:
        super().__init__(f"rpc-server {endpoint}: {message}" if endpoint else message)
        self.endpoint = endpoint


def parse_size(text: str) -> int:
    """'24GiB', '24G', '1.5g', '512MiB', '1073741824' -> bytes (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise MoetuiError(f"not a memory size: {text!r} (e.g. 24GiB, 512MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class RpcEndpoint:
    host: str
    port: int = DEFAULT_PORT
    limit_bytes: int | None = None  # the memory cap the server was started with, when the user says

    @property
    def address(self) -> str:
        """What llama.cpp's --rpc and buffer type names use: host:port ([v6] for an IPv6 host)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def spec(self) -> str:
        """moetui's spelling: the address plus =cap when one is known."""
        return self.address + (f"={self.limit_bytes}" if self.limit_bytes else "")


def parse_endpoint(text: str) -> RpcEndpoint:
    raw = text.strip()
    if not raw:
        raise MoetuiError("empty RPC server address (want host:port)")
    limit = None
    if "=" in raw:
        raw, cap = raw.split("=", 1)
        limit = parse_size(cap)
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\s]+)(?::(\d+))?", raw)
    if not m:
        raise MoetuiError(f"not an RPC server address: {text!r} (want host:port, e.g. 192.168.1.20:50052)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise MoetuiError(f"{text!r}: port {port} out of range")
    return RpcEndpoint(host, port, limit)


def parse_endpoints(text: str | list[str] | None) -> list[RpcEndpoint]:
    """'a:1,b:2=8G' (or a list of such) -> endpoints, duplicates refused (llama.cpp would reuse one)."""
    if not text:
        return []
    parts = text if isinstance(text, list) else text.split(",")
    eps = [parse_endpoint(p) for p in parts if p.strip()]
    seen: set[str] = set()
    for e in eps:
        if e.address in seen:
            raise MoetuiError(f"RPC server {e.address} is listed twice")
        seen.add(e.address)
    return eps


@dataclass
class RemoteDevice:
    """One device an RPC server exposes. Sizes in bytes, bandwidths in GB/s, latency in seconds."""

    endpoint: str  # host:port
    index: int = 0  # the device's number on that server
    buffer_type: str = ""  # llama.cpp's buffer type name, what `-ot pattern=...` takes: RPC0[host:port]
    backend: str = "unknown"  # "CPU" when the server's device reports free == total (ggml's CPU device does)
    memory_free_bytes: int = 0
    memory_total_bytes: int = 0
    limit_bytes: int | None = None  # the cap the user declared; the server cannot report it
    protocol: str = ""  # RPC protocol version the server answered HELLO with
    rtt_s: float | None = None  # one small request/answer on the wire, measured at detect
    link_gbs: float | None = None  # network bandwidth to the host, when the user knows it (else a default)
    mem_bandwidth_gbs: float | None = None  # memory bandwidth of the remote device, when the user knows it

    @property
    def usable_bytes(self) -> int:
        free = self.memory_free_bytes or self.memory_total_bytes
        return min(free, self.limit_bytes) if self.limit_bytes else free

    @property
    def label(self) -> str:
        return f"{self.buffer_type or self.endpoint}"


@dataclass
class Preflight:
    endpoint: str
    protocol: str
    n_devices: int
    rtt_s: float


def _recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    """n bytes; a server that trickles them gets no more than the whole step's deadline (socket.timeout)."""
    buf = b""
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("deadline")
            sock.settimeout(min(sock.gettimeout() or left, left))
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("connection closed")
        buf += chunk
    return buf


def _call(sock: socket.socket, cmd: int, payload: bytes, want: int, deadline: float | None = None) -> bytes:
    sock.sendall(bytes([cmd]) + struct.pack("<Q", len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
    if size != want:
        raise ValueError(f"answer of {size} bytes, expected {want}")
    return _recv_exact(sock, size, deadline)


def preflight(endpoint: RpcEndpoint | str, timeout: float = PREFLIGHT_TIMEOUT_S) -> Preflight:
    """Connect, HELLO, DEVICE_COUNT; raise RpcServerError naming the host for every way that fails."""
    ep = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
    addr = ep.address
    timeout = min(timeout, net_limits().total_s)
    deadline = time.monotonic() + net_limits().total_s  # the whole handshake, however the server trickles it
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    except ConnectionRefusedError:
        raise RpcServerError(addr, "connection refused (is ggml-rpc-server running there, on that port?)") from None
    except socket.timeout:
        raise RpcServerError(addr, f"no answer to connect within {timeout:g} s (host down or firewalled)") from None
    except OSError as exc:
        raise RpcServerError(addr, f"cannot connect: {exc.strerror or exc}") from None
    with sock:
        try:
            hello = _call(sock, RPC_CMD_HELLO, bytes(RPC_CONN_CAPS_SIZE), 4 + RPC_CONN_CAPS_SIZE, deadline)
            major, minor, patch = hello[0], hello[1], hello[2]
            if major != RPC_PROTO_MAJOR:
                raise RpcServerError(addr, f"speaks RPC protocol {major}.{minor}.{patch}; this llama.cpp needs "
                                           f"{RPC_PROTO_MAJOR}.x (run the ggml-rpc-server of the same llama.cpp)")
            rtt = float("inf")
            for _ in range(RTT_SAMPLES):  # the fastest of a few: the first answers of a fresh server are slow
                t0 = time.perf_counter()
                (count,) = struct.unpack("<I", _call(sock, RPC_CMD_DEVICE_COUNT, b"", 4, deadline))
                rtt = min(rtt, time.perf_counter() - t0)
        except socket.timeout:
            if time.monotonic() >= deadline:  # it answered, but too slowly to finish
                raise RpcServerError(addr, f"did not finish the handshake within {net_limits().total_s:g} s (a stalled "
                                           "or very slow server; MOETUI_NET_TIMEOUT sets the deadline)") from None
            raise RpcServerError(addr, f"accepted the connection but did not answer HELLO within {timeout:g} s "
                                       "(busy: ggml-rpc-server serves one client at a time)") from None
        except (ConnectionError, ValueError, struct.error) as exc:
            raise RpcServerError(addr, f"not a compatible ggml-rpc-server (handshake failed: {exc})") from None
    if count == 0:
        raise RpcServerError(addr, "exposes no devices")
    if count > MAX_RPC_DEVICES:
        raise RpcServerError(addr, f"sent an impossible device count: {count:,} (llama.cpp uses at most "
                                   f"{MAX_RPC_DEVICES} devices in all); refused")
    return Preflight(addr, f"{major}.{minor}.{patch}", count, rtt)


def check_device_memory(address: str, index: int, free: int, total: int) -> None:
    """What a server says of a device's memory, refused (RpcServerError naming host and field) where it
    cannot be true: above any real device, or more free than there is in all."""
    try:
        check_size(address, f"total memory of device {index}", total, MAX_DEVICE_BYTES)
        check_size(address, f"free memory of device {index}", free, MAX_DEVICE_BYTES)
    except ServerClaimError as exc:
        raise RpcServerError(address, str(exc).removeprefix(f"{address} ")) from None
    if free > total:
        raise RpcServerError(address, f"sent an impossible free memory of device {index}: {free / (1 << 30):.2f} GiB "
                                      f"free of {total / (1 << 30):.2f} GiB in all; refused")


def alive(endpoint: str, timeout: float = 1.0) -> bool:
    """Whether something still accepts connections at endpoint (for naming the server that died)."""
    ep = parse_endpoint(endpoint)
    try:
        socket.create_connection((ep.host, ep.port), timeout=timeout).close()
        return True
    except OSError:
        return False


def dead_server_message(servers: list[str], message: str) -> tuple[str, str] | None:
    """("rpc", a message naming the server) when one of `servers` no longer accepts connections: what a
    model worker that died mid-run with RPC devices is told (libggml aborts with "Remote RPC server
    crashed" and no name)."""
    dead = [s for s in servers if not alive(s)]
    if not dead:
        return None
    which = ", ".join(dead)
    return "rpc", (f"rpc-server {which} stopped answering (connection refused now); {message}. "
                   "Restart it (moetui rpc-server) and load again")
