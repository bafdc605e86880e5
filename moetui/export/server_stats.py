"""Live figures of a running llama-server, from its own /metrics (Prometheus text, with --metrics) and
/slots (JSON), plus the process's RAM (psutil) and VRAM (NVML, as the worker's stats do).

Rates are the server's counters differenced between two polls (tokens per wall second over the interval,
all requests together), so several concurrent requests add up; per request, a slot's decoded tokens over
the time since moetui first saw that request.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from moetui.runtime.stats import process_vram_bytes

COUNTERS = ("prompt_tokens_total", "prompt_seconds_total", "tokens_predicted_total", "tokens_predicted_seconds_total",
            "n_decode_total")
GAUGES = ("requests_processing", "requests_deferred", "prompt_tokens_seconds", "predicted_tokens_seconds")


def parse_metrics(text: str) -> dict[str, float]:
    """llamacpp:NAME VALUE lines -> {NAME: VALUE} (labelled series and comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("llamacpp:") or "{" in line:
            continue
        name, _, value = line[len("llamacpp:"):].partition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


@dataclass
class RequestRow:
    """One request a slot is serving or served last."""

    task: int
    slot: int
    state: str  # prompt | generating | done
    n_prompt: int
    n_decoded: int
    decode_tok_s: float | None
    first_seen: float


@dataclass
class ServerStats:
    at: float
    requests_running: int = 0
    requests_queued: int = 0
    prompt_tokens: int = 0  # served since the server started
    tokens_predicted: int = 0
    prompt_tok_s: float | None = None  # over the last poll interval, all requests
    decode_tok_s: float | None = None
    prompt_tok_s_server: float | None = None  # llama-server's own average while busy
    decode_tok_s_server: float | None = None
    rss_bytes: int | None = None
    vram_bytes: int | None = None
    requests: list[RequestRow] = field(default_factory=list)
    error: str | None = None  # why this poll got nothing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The figures in one line, for a status line (`moetui serve`, the Serve screen)."""
        if self.error:
            return f"stats unavailable: {self.error}"
        mem = f" · RAM {self.rss_bytes / 2**30:.2f} GiB" if self.rss_bytes else ""
        mem += f" · VRAM {self.vram_bytes / 2**30:.2f} GiB" if self.vram_bytes else ""
        return (f"running {self.requests_running} · queued {self.requests_queued} · prompt {rate(self.prompt_tok_s)} "
                f"tok/s · decode {rate(self.decode_tok_s)} tok/s · served {self.prompt_tokens} prompt + "
                f"{self.tokens_predicted} generated tokens{mem}")


def rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _get(url: str, api_key: str | None, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


class StatsPoller:
    """Call `poll()` every second or so; it keeps what it needs to difference counters."""

    def __init__(self, base_url: str, api_key: str | None = None, pid: int | None = None, timeout: float = 3.0) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.pid = pid
        self.timeout = timeout
        self._last: tuple[float, dict[str, float]] | None = None
        self._seen: dict[int, float] = {}  # task id -> when first seen
        self.done: dict[int, RequestRow] = {}  # finished requests, the latest per task
        self._live_rate: dict[int, float | None] = {}
        self.max_done = 50

    def poll(self) -> ServerStats:
        now = time.monotonic()
        st = ServerStats(at=time.time())
        try:
            metrics = parse_metrics(_get(self.base_url + "/metrics", self.api_key, self.timeout).decode())
            slots = json.loads(_get(self.base_url + "/slots", self.api_key, self.timeout))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            st.error = f"{type(exc).__name__}: {exc}"
            return st
        st.requests_running = int(metrics.get("requests_processing", 0))
        st.requests_queued = int(metrics.get("requests_deferred", 0))
        st.prompt_tokens = int(metrics.get("prompt_tokens_total", 0))
        st.tokens_predicted = int(metrics.get("tokens_predicted_total", 0))
        st.prompt_tok_s_server = metrics.get("prompt_tokens_seconds") or None
        st.decode_tok_s_server = metrics.get("predicted_tokens_seconds") or None
        if self._last is not None:
            t0, m0 = self._last
            dt = now - t0
            if dt > 0:
                st.prompt_tok_s = (metrics.get("prompt_tokens_total", 0) - m0.get("prompt_tokens_total", 0)) / dt
                st.decode_tok_s = (metrics.get("tokens_predicted_total", 0) - m0.get("tokens_predicted_total", 0)) / dt
        self._last = (now, metrics)
        st.requests = self._rows(slots if isinstance(slots, list) else [], now)
        if self.pid is not None:
            try:
                st.rss_bytes = psutil.Process(self.pid).memory_info().rss
            except psutil.Error:
                pass
            st.vram_bytes = process_vram_bytes(self.pid)
        return st

    def _rows(self, slots: list[dict[str, Any]], now: float) -> list[RequestRow]:
        rows: list[RequestRow] = []
        for s in slots:
            task = s.get("id_task")
            if task is None or task < 0:
                continue
            first = self._seen.setdefault(task, now)
            nxt = (s.get("next_token") or [{}])[0]
            decoded = int(nxt.get("n_decoded", 0))
            if s.get("is_processing"):
                state = "generating" if decoded else "prompt"
                rate = decoded / (now - first) if decoded and now > first else None
                rows.append(RequestRow(task, int(s.get("id", 0)), state, int(s.get("n_prompt_tokens", 0)), decoded, rate, first))
                self._live_rate[task] = rate
            elif task not in self.done:  # finished (or seen only once it had): its last live rate stays
                self.done[task] = RequestRow(task, int(s.get("id", 0)), "done", int(s.get("n_prompt_tokens", 0)),
                                             decoded, self._live_rate.pop(task, None), first)
        while len(self.done) > self.max_done:
            self.done.pop(min(self.done))
        return rows + sorted(self.done.values(), key=lambda r: -r.task)
