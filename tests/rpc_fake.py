"""A fake ggml-rpc-server on 127.0.0.1 that speaks just enough of the protocol (HELLO, DEVICE_COUNT,
GET_ALIGNMENT, GET_MAX_SIZE, GET_DEVICE_MEMORY) for moetui's preflight and libggml's RPC client, and lies
as told:

    with FakeRpcServer(devices=2**32 - 1) as addr: ...                # an absurd device count
    with FakeRpcServer(devices_later=2**32 - 1, honest_clients=2) as addr: ...  # 1 to the first two clients
                                                                      # (the preflights), absurd to libggml's
    with FakeRpcServer(free=2**64 - 1, total=2**64 - 1) as addr: ...  # 16 EiB free
    with FakeRpcServer(free=64 << 30, total=1 << 30) as addr: ...     # free above total
    with FakeRpcServer(malformed_memory=True) as addr: ...            # a memory answer of the wrong size
    with FakeRpcServer(trickle_s=0.5) as addr: ...                    # every answer a byte at a time
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType

HELLO, DEVICE_COUNT, GET_ALIGNMENT, GET_MAX_SIZE, GET_DEVICE_MEMORY = 14, 15, 1, 2, 11
CAPS = 24


class FakeRpcServer:
    def __init__(self, devices: int = 1, devices_later: int | None = None, honest_clients: int = 1, free: int = 8 << 30,
                 total: int = 8 << 30, malformed_memory: bool = False, reply: bytes | None = None,
                 trickle_s: float = 0.0) -> None:
        self.devices, self.devices_later, self.honest_clients = devices, devices_later, honest_clients
        self.free, self.total, self.malformed_memory = free, total, malformed_memory
        self.reply = reply  # raw bytes answering every request (for fuzzing), instead of the protocol
        self.trickle_s = trickle_s
        self.clients = 0
        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(8)
        self.address = f"127.0.0.1:{self._srv.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> str:
        return self.address

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._srv.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self.clients += 1
            threading.Thread(target=self._serve, args=(conn, self.clients), daemon=True).start()

    def _serve(self, conn: socket.socket, client: int) -> None:
        count = self.devices if self.devices_later is None or client <= self.honest_clients else self.devices_later
        with conn:
            try:
                while True:
                    head = _recv(conn, 9)
                    cmd, size = head[0], struct.unpack("<Q", head[1:])[0]
                    _recv(conn, size)
                    if self.reply is not None:
                        conn.sendall(self.reply)
                        return
                    if cmd == HELLO:
                        out = bytes([7, 0, 0, 0]) + bytes(CAPS)
                    elif cmd == DEVICE_COUNT:
                        out = struct.pack("<I", count & 0xFFFFFFFF)
                    elif cmd in (GET_ALIGNMENT, GET_MAX_SIZE):
                        out = struct.pack("<Q", 32 if cmd == GET_ALIGNMENT else 1 << 30)
                    elif cmd == GET_DEVICE_MEMORY:
                        out = struct.pack("<QQ", self.free, self.total)
                        if self.malformed_memory:
                            out = out[:5]
                    else:
                        return
                    answer = struct.pack("<Q", len(out)) + out
                    if not self.trickle_s:
                        conn.sendall(answer)
                    for i in range(len(answer) if self.trickle_s else 0):
                        conn.sendall(answer[i:i + 1])
                        time.sleep(self.trickle_s)
            except OSError:
                return


def _recv(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError
        buf += chunk
    return buf
