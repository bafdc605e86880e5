"""`moetui serve` (issue 29): the official `openai` client against the real llama-server the project builds,
supervised by moetui.export.serving, on the tiny MoE proxy and on the real Gemma 3 270M. Readiness is
awaited (the supervisor's /health wait, the CLI's JSON lines), never slept for."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import psutil
import pytest

from moetui.config import RunConfig
from moetui.export.llama_tools import ensure_llama_tools
from moetui.export.server_stats import StatsPoller
from moetui.export.serving import ServeError, ServeOptions, ServerSupervisor
from moetui.hub.real_model import real_model_path

from conftest import repack_ok

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def server_bin() -> Path:
    return ensure_llama_tools(["llama-server"]) / "llama-server"


def _cfg(model: Path, n_parallel: int = 1, **kw) -> RunConfig:  # type: ignore[no-untyped-def]
    return RunConfig(model_path=str(model), n_ctx=512 * n_parallel, n_parallel=n_parallel, n_threads=2,
                     repack=repack_ok(), **kw)


def _client(sup: ServerSupervisor, key: str | None = None) -> openai.OpenAI:
    assert sup.endpoint is not None
    return openai.OpenAI(base_url=sup.endpoint.openai_url, api_key=key or "none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def served(tiny_moe: Path, server_bin: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    log = tmp_path_factory.mktemp("serve") / "server.log"
    sup = ServerSupervisor(_cfg(tiny_moe, n_parallel=4), ServeOptions(binary=str(server_bin), log_path=log))
    sup.start()
    yield sup
    sup.stop()


def test_models_and_chat_plain_and_streamed(served: ServerSupervisor) -> None:
    client = _client(served)
    assert [m.id for m in client.models.list().data] == [served.endpoint.model]  # type: ignore[union-attr]
    msgs = [{"role": "user", "content": "hello"}]
    reply = client.chat.completions.create(model=served.endpoint.model, messages=msgs, max_tokens=8)  # type: ignore[union-attr, arg-type]
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    chunks = list(client.chat.completions.create(model=served.endpoint.model, messages=msgs, max_tokens=8,  # type: ignore[union-attr, arg-type]
                                                 stream=True))
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # streamed piece by piece
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason is not None


def test_four_concurrent_requests_on_four_slots(served: ServerSupervisor) -> None:
    client = _client(served)
    poller = StatsPoller(served.endpoint.base_url)  # type: ignore[union-attr]
    results: list[int] = []
    most_running = 0

    def one() -> None:
        r = client.chat.completions.create(model=served.endpoint.model, max_tokens=96, temperature=1.0,  # type: ignore[union-attr]
                                           messages=[{"role": "user", "content": "tell me a story"}])
        results.append(r.usage.completion_tokens)  # type: ignore[union-attr]

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        st = poller.poll()
        most_running = max(most_running, st.requests_running)
        time.sleep(0.05)
    assert len(results) == 4 and all(n >= 1 for n in results)
    assert most_running >= 2, "the four slots served requests side by side"
    with urllib.request.urlopen(served.endpoint.base_url + "/props", timeout=10) as r:  # type: ignore[union-attr]
        assert json.loads(r.read())["total_slots"] == 4
    st = poller.poll()
    assert st.tokens_predicted >= sum(results) and any(r.state == "done" for r in st.requests)


def test_a_malformed_request_is_a_400(served: ServerSupervisor) -> None:
    req = urllib.request.Request(served.endpoint.openai_url + "/chat/completions", data=b'{"messages": "hi"}',  # type: ignore[union-attr]
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400
    with pytest.raises(openai.BadRequestError):
        _client(served).chat.completions.create(model="x", messages=[{"role": "nobody", "content": 5}], max_tokens=2)  # type: ignore[list-item]


def test_an_api_key_is_enforced_on_a_wildcard_bind(tiny_moe: Path, server_bin: Path, tmp_path: Path) -> None:
    with pytest.raises(ServeError, match="needs an API key"):
        ServerSupervisor(_cfg(tiny_moe), ServeOptions(host="0.0.0.0", binary=str(server_bin))).start()
    sup = ServerSupervisor(_cfg(tiny_moe), ServeOptions(host="0.0.0.0", api_key="sekrit", binary=str(server_bin),
                                                        log_path=tmp_path / "s.log"))
    try:
        ep = sup.start()
        assert ep.base_url.startswith("http://127.0.0.1:")
        assert "sekrit" not in " ".join(psutil.Process(ep.pid).cmdline())  # passed by env, not shown by ps
        with pytest.raises(openai.AuthenticationError):
            _client(sup, "wrong").models.list()
        assert _client(sup, "sekrit").models.list().data
    finally:
        sup.stop()


def test_killed_mid_stream_it_restarts(tiny_moe: Path, server_bin: Path, tmp_path: Path) -> None:
    sup = ServerSupervisor(_cfg(tiny_moe), ServeOptions(binary=str(server_bin), log_path=tmp_path / "s.log"))
    try:
        ep = sup.start()
        first_pid = ep.pid
        stream = _client(sup).chat.completions.create(model=ep.model, messages=[{"role": "user", "content": "go"}],
                                                      max_tokens=100000, stream=True)
        with pytest.raises((openai.APIError, openai.APIConnectionError, Exception)):
            for n, _ in enumerate(stream):
                if n == 3:
                    os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while not any(e.kind == "ready" for e in sup.events[2:]):  # a second ready: restarted
            assert time.monotonic() < deadline, [e.message for e in sup.events]
            time.sleep(0.1)
        kinds = [e.kind for e in sup.events]
        assert kinds[:2] == ["starting", "ready"] and "died" in kinds and "restarting" in kinds
        assert "SIGKILL" in next(e.message for e in sup.events if e.kind == "died")
        assert sup.proc is not None and sup.proc.pid != first_pid and not psutil.pid_exists(first_pid)
        assert sup.endpoint is not None and sup.endpoint.port == ep.port  # clients keep their URL
        reply = _client(sup).chat.completions.create(model=ep.model, messages=[{"role": "user", "content": "again"}],
                                                     max_tokens=4)
        assert reply.choices[0].message.content is not None
    finally:
        sup.stop()
    assert sup.proc is not None and sup.proc.poll() is not None


def test_it_gives_up_after_n_crashes_and_says_why(tiny_moe: Path, server_bin: Path, tmp_path: Path) -> None:
    sup = ServerSupervisor(_cfg(tiny_moe), ServeOptions(binary=str(server_bin), max_restarts=1, log_path=tmp_path / "s.log"))
    try:
        sup.start()
        for n in range(2):  # the first crash is restarted, the second is one too many (max_restarts=1)
            os.kill(sup.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            deadline = time.monotonic() + 120
            while not (sup.gave_up or [e.kind for e in sup.events].count("ready") == n + 2):
                assert time.monotonic() < deadline, [e.message for e in sup.events]
                time.sleep(0.1)
        assert sup.gave_up is not None and "gave up" in sup.gave_up
        assert sup.events[-1].kind == "gave_up"
    finally:
        sup.stop()


def test_a_busy_port_a_missing_binary_and_a_model_that_fails(tiny_moe: Path, server_bin: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} on 127.0.0.1 is in use"):
            ServerSupervisor(_cfg(tiny_moe), ServeOptions(port=port, binary=str(server_bin))).start()
    with pytest.raises(ServeError, match="no usable llama-server"):
        ServerSupervisor(_cfg(tiny_moe), ServeOptions(binary=str(tmp_path / "nope" / "llama-server"))).start()
    with pytest.raises(ServeError, match="too old to serve"):  # llama-bench: a llama.cpp binary without --metrics
        ServerSupervisor(_cfg(tiny_moe), ServeOptions(binary=str(server_bin.with_name("llama-bench")))).start()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_moe.read_bytes()[: 1 << 16])  # a download cut short
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(ServeError, match="llama-server exited") as err:
        ServerSupervisor(_cfg(broken), ServeOptions(binary=str(server_bin), log_path=tmp_path / "s.log")).start()
    assert "load" in str(err.value) or "tensor" in str(err.value), str(err.value)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def _read_event(proc: subprocess.Popen[str], kind: str, timeout: float = 180) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"moetui serve ended before {kind!r}"
        ev = json.loads(line)
        if ev["event"] == kind and (kind != "stats" or ev["tokens_predicted"] > 0):
            return ev
    raise AssertionError(f"no {kind!r} event")


def test_the_cli_serves_streams_json_stats_and_leaves_nothing_behind(tiny_moe: Path, server_bin: Path) -> None:
    env = {**os.environ, "PATH": f"{server_bin.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, "-m", "moetui", "serve", str(tiny_moe), "--json", "--host", "0.0.0.0",
                             "-c", "256", "--parallel", "2", "-t", "2", "--untuned"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready = _read_event(proc, "ready")
        assert ready["api_key_required"] and ready["n_parallel"] == 2 and ready["n_ctx"] == 512
        key = (Path(os.environ["MOETUI_DATA_DIR"]) / "serve-api-key").read_text().strip()
        assert key in ready["python"] and ready["binary"] == str(server_bin)  # the one on PATH
        client = openai.OpenAI(base_url=ready["base_url"], api_key=key, max_retries=0)
        client.chat.completions.create(model=ready["model"], messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        stats = _read_event(proc, "stats")
        assert stats["tokens_predicted"] >= 1 and stats["rss_bytes"] > 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not psutil.pid_exists(ready["pid"]) or psutil.Process(ready["pid"]).status() == psutil.STATUS_ZOMBIE
    assert "generated one and stored it" in proc.stderr.read()  # type: ignore[union-attr]


def test_gemma_answers_paris_through_the_api(server_bin: Path, tmp_path: Path) -> None:
    gemma = real_model_path()
    assert gemma is not None
    sup = ServerSupervisor(_cfg(gemma), ServeOptions(binary=str(server_bin), log_path=tmp_path / "s.log"))
    try:
        ep = sup.start()
        reply = _client(sup).chat.completions.create(
            model=ep.model, messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=24, temperature=0)
        assert "Paris" in (reply.choices[0].message.content or "")
    finally:
        sup.stop()
