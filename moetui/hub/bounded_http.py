"""One HTTP GET with a deadline and a byte cap: what every hub read that is not a download goes through.

httpx bounds each socket read, not the whole answer: a server that trickles a byte every few seconds keeps a
read alive forever, and one that sends an endless body fills memory. Here the request runs in a helper
thread that stops reading at the byte cap, and the caller waits for it no longer than the deadline
(MOETUI_NET_TIMEOUT, moetui.hardware.net_limits). A request given up on is told to stop and its thread ends
at its next read or read timeout; nothing it reads after that is used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from moetui.errors import HubError
from moetui.hardware.net_limits import NetLimits, net_limits
from moetui.hub.connection import hub_errors

# huggingface_hub, httpx2: imported inside the functions that need them, to keep start-up fast

T = TypeVar("T")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


def bounded_get(url: str, *, what: str, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                max_bytes: int, keep_from: int = 0, stop_at_cap: bool = False,
                limits: NetLimits | None = None) -> Reply:
    """GET url; the answer's body, at most max_bytes of it (counted after skipping `keep_from` bytes of a
    200 answer: a server that ignored a Range header). Past max_bytes: stop there when stop_at_cap (a range
    read that got more than it asked for), else a HubError naming the host (a listing too large to be one).
    Connection and HTTP failures, and the deadline, become one-line HubErrors naming the host."""
    lim = limits or net_limits()
    stop = threading.Event()
    return call_with_deadline(lambda: _get(url, what, headers or {}, params, max_bytes, keep_from, stop_at_cap, lim, stop),
                              what=what, host=host_of(url), limits=lim, stop=stop)


def call_with_deadline(fn: Callable[[], T], *, what: str, host: str, limits: NetLimits | None = None,
                       stop: threading.Event | None = None) -> T:
    """fn() (one network step) run in a helper thread, waited for no longer than the deadline: its result,
    or what it raised, or a HubError naming the host when the deadline passed (`stop` is then set)."""
    lim = limits or net_limits()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # handed to the waiting caller, which raises it
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"moetui-net {host}", daemon=True)
    worker.start()
    worker.join(lim.total_s)
    if worker.is_alive():
        if stop is not None:
            stop.set()
        raise HubError(f"{what}: {host} did not answer in full within {lim.total_s:g} s "
                       f"(a stalled or very slow server; MOETUI_NET_TIMEOUT sets the deadline)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _get(url: str, what: str, headers: dict[str, str], params: dict[str, Any] | None, max_bytes: int,
         keep_from: int, stop_at_cap: bool, lim: NetLimits, stop: threading.Event) -> Reply:
    from huggingface_hub import get_session  # heavy: only for a request

    with hub_errors(what):
        with get_session().stream("GET", url, headers=headers, params=params, follow_redirects=True,
                                  timeout=lim.httpx_timeout()) as resp:
            skip = keep_from if resp.status_code == 200 else 0
            body = bytearray()
            for chunk in resp.iter_bytes():
                if stop.is_set():
                    break  # the caller gave up on this answer
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                body += chunk
                if len(body) > max_bytes or (stop_at_cap and len(body) >= max_bytes):
                    if stop_at_cap:
                        del body[max_bytes:]
                        break
                    raise HubError(f"{what}: {host_of(str(resp.url))} sent more than {max_bytes / (1 << 20):g} MiB, "
                                   "more than such an answer can be; refused")
            return Reply(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, bytes(body), str(resp.url))

