"""How long moetui waits on another machine (the hub, a CDN, an RPC server) and how much it reads from it.

One user setting, MOETUI_NET_TIMEOUT (seconds, default 15): the deadline of each network step. A step is
one request and its whole answer (a hub listing, a range read of a header, an RPC server's reply), so a dead
server, one that stalls after connecting and one that trickles a byte at a time all end within about that
long, with a message naming the host. Connecting gets at most a third of it. A download (gigabytes) cannot
end within one deadline: there the deadline bounds the wait for each piece, and a transfer slower than
DOWNLOAD_MIN_BPS over a deadline's window counts as stalled.

Sizes a server claims are checked against what a real model can be (MAX_FILE_BYTES, MAX_DEVICE_BYTES) and
what llama.cpp can use (MAX_RPC_DEVICES); answers are read with a cap on bytes (MAX_LISTING_BYTES).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from moetui.errors import ConfigError, MoetuiError

ENV = "MOETUI_NET_TIMEOUT"
DEFAULT_TIMEOUT_S = 15.0
MAX_TIMEOUT_S = 3600.0

MAX_LISTING_BYTES = 32 << 20  # a hub listing with every file's metadata: the largest repos are a few MB
MAX_LISTING_ENTRIES = 50_000  # files in one repo listing (the hub itself caps repos far below this)
MAX_FILE_BYTES = 2 << 40  # one file: the hub's LFS limit is 50 GB a file, the largest GGUFs ~1 TB unsplit
MAX_DEVICE_BYTES = 1 << 50  # one device's memory (1 PiB): beyond any machine an RPC server runs on
MAX_RPC_DEVICES = 16  # llama.cpp's GGML_SCHED_MAX_BACKENDS: devices one load can use, all servers together
DOWNLOAD_MIN_BPS = 1024  # a download slower than this over a whole deadline window has stalled


@dataclass(frozen=True)
class NetLimits:
    """The deadlines of one network step, in seconds."""

    total_s: float  # the whole step: connect, first byte, the whole answer

    @property
    def connect_s(self) -> float:
        return min(5.0, self.total_s / 3)

    @property
    def first_byte_s(self) -> float:
        return self.total_s

    def httpx_timeout(self) -> object:
        """An httpx(2) Timeout: connect bounded on its own, each read bounded by the whole deadline
        (the caller checks the whole-step deadline between reads)."""
        import httpx2  # heavy: only for a request

        return httpx2.Timeout(self.total_s, connect=self.connect_s)


def net_limits() -> NetLimits:
    """The deadlines in force: MOETUI_NET_TIMEOUT, else the default. A bad value is a clear error."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return NetLimits(DEFAULT_TIMEOUT_S)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV}={raw[:40]!r}: not a number of seconds (e.g. {ENV}=15)") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ConfigError(f"{ENV}={raw[:40]!r}: must be between 0 and {MAX_TIMEOUT_S:g} seconds")
    return NetLimits(value)


def check_size(host: str, field_name: str, value: object, limit: int = MAX_FILE_BYTES) -> int:
    """A byte count a server sent: an int from 0 to `limit`, else a ServerClaimError naming host and field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServerClaimError(host, field_name, f"{str(value)[:40]!r} is not a byte count")
    if value < 0:
        raise ServerClaimError(host, field_name, f"{value} is negative")
    if value > limit:
        raise ServerClaimError(host, field_name, f"{value:,} bytes is more than any real {_what(limit)}")
    return value


def _what(limit: int) -> str:
    return "device has" if limit == MAX_DEVICE_BYTES else "model file is"


class ServerClaimError(MoetuiError):
    """A server answered with something that cannot be true (a negative size, free memory above total)."""

    def __init__(self, host: str, field_name: str, why: str) -> None:
        super().__init__(f"{host} sent an impossible {field_name}: {why}; refused")
        self.host, self.field_name = host, field_name
