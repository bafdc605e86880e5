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
    n_prompt: int | None  # None: not known (it came and went between two polls, beside others)
    n_decoded: int | None
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
        self._live: dict[int, RequestRow] = {}  # the last sight of each running request
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
        d_prompt = d_pred = None
        if self._last is not None:
            t0, m0 = self._last
            d_prompt = metrics.get("prompt_tokens_total", 0) - m0.get("prompt_tokens_total", 0)
            d_pred = metrics.get("tokens_predicted_total", 0) - m0.get("tokens_predicted_total", 0)
            if d_prompt < 0 or d_pred < 0:  # a restarted server counts from 0 again
                d_prompt = d_pred = None
            elif now > t0:
                st.prompt_tok_s, st.decode_tok_s = d_prompt / (now - t0), d_pred / (now - t0)
        self._last = (now, metrics)
        st.requests = self._rows(slots if isinstance(slots, list) else [], now, d_prompt, d_pred)
        if self.pid is not None:
            try:
                st.rss_bytes = psutil.Process(self.pid).memory_info().rss
            except psutil.Error:
                pass
            st.vram_bytes = process_vram_bytes(self.pid)
        return st

    def _rows(self, slots: list[dict[str, Any]], now: float, d_prompt: float | None,
              d_pred: float | None) -> list[RequestRow]:
        """Running requests from /slots, and finished ones. A slot forgets its counts once its request is done,
        so a finished request keeps what moetui last saw of it, plus the server's counters since, when it
        finished alone (else its counts are a lower bound, or unknown when it came and went between polls)."""
        rows: list[RequestRow] = []
        busy = [s for s in slots if s.get("is_processing")]
        newly = [s for s in slots if not s.get("is_processing") and isinstance(s.get("id_task"), int)
                 and s["id_task"] >= 0 and s["id_task"] not in self.done]
        alone = len(newly) == 1 and not busy and d_pred is not None
        for s in busy:
            task = int(s.get("id_task", -1))
            first = self._seen.setdefault(task, now)
            decoded = int((s.get("next_token") or [{}])[0].get("n_decoded", 0))
            rate = decoded / (now - first) if decoded and now > first else None
            row = RequestRow(task, int(s.get("id", 0)), "generating" if decoded else "prompt",
                             int(s.get("n_prompt_tokens", 0)), decoded, rate, first)
            self._live[task] = row
            rows.append(row)
        for s in newly:
            task = int(s["id_task"])
            live = self._live.pop(task, None)
            first = self._seen.setdefault(task, now)
            if live is not None:
                decoded: int | None = live.n_decoded + (int(d_pred or 0) if alone else 0)
                prompt: int | None = live.n_prompt
            else:
                decoded = int(d_pred or 0) if alone else None
                prompt = int(d_prompt or 0) if alone else None
            self.done[task] = RequestRow(task, int(s.get("id", 0)), "done", prompt, decoded,
                                         live.decode_tok_s if live else None, first)
        while len(self.done) > self.max_done:
            self.done.pop(min(self.done))
        return rows + sorted(self.done.values(), key=lambda r: -r.task)
