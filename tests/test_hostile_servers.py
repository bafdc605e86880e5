"""Issue 30: servers that misbehave on purpose (the fake hub of hub_server.py with hub_faults.py, the fake
RPC server of rpc_fake.py). One test per row of the issue's table: each checks the exit code, that the
message is one line naming the host (and the field, where a claim is refused), and a time bound. The
deadline is the user's setting, MOETUI_NET_TIMEOUT, set short here; bounds are generous for a busy CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moetui.errors import MoetuiError
from moetui.runtime.rpc_ctypes import probe

from hub_server import fake_hub  # noqa: F401
from rpc_fake import FakeRpcServer

REPO = "me/tiny-GGUF"
FILE = "tiny-moe-Q4_K_M.gguf"
DEADLINE_S = 3  # MOETUI_NET_TIMEOUT in these tests
BOUND_S = 40
SOURCE_PATH = re.compile(r"\S*/\S+\.(?:cpp|cc|cu|c|h|py)\b|\S+\.(?:cpp|cc|cu|c|h|py):\d+")  # a file, or file:line


def cli(*args: str, mem_cap: int | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """`moetui ARGS` in a child (with an address-space cap when asked), and how long it took."""
    env = dict(os.environ, MOETUI_NET_TIMEOUT=str(DEADLINE_S))
    code = "import runpy, sys; sys.argv = ['moetui', *sys.argv[1:]]; runpy.run_module('moetui', run_name='__main__')"
    if mem_cap:
        code = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({mem_cap}, {mem_cap})); " + code
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)
    return p, time.monotonic() - t0


def assert_one_line(p: subprocess.CompletedProcess[str], *words: str) -> None:
    err = p.stderr.strip()
    assert p.returncode == 2, (p.returncode, err)
    assert "Traceback" not in err and err.count("\n") <= 1, err  # one error line (+ the offline hint at most)
    assert not SOURCE_PATH.search(err), err  # no source path of llama.cpp or moetui
    for w in words:
        assert w in err, (w, err)


@pytest.fixture
def hub(fake_hub, tiny_moe: Path):  # type: ignore[no-untyped-def]
    fake_hub.add_file(REPO, FILE, tiny_moe)
    return fake_hub


def _host(hub) -> str:  # type: ignore[no-untyped-def]
    return hub.url.removeprefix("http://")


@pytest.mark.parametrize("args", [["models", "list", REPO], ["inspect", f"{REPO}:Q4_K_M"], ["plan", f"{REPO}:Q4_K_M"]],
                         ids=["models-list", "inspect", "plan"])
def test_a_listing_that_stalls_after_connecting_ends_at_the_deadline(hub, args: list[str]) -> None:
    hub.listing_fault = "stall"
    p, seconds = cli(*args)
    assert_one_line(p, _host(hub), f"within {DEADLINE_S} s", "MOETUI_NET_TIMEOUT")
    assert seconds < BOUND_S


def test_an_endless_listing_is_refused_at_its_byte_cap_in_bounded_memory(hub) -> None:
    hub.listing_fault = "endless"
    p, seconds = cli("models", "list", REPO, mem_cap=3 << 30)  # it grew to 8 GB before
    assert_one_line(p, _host(hub), "more than 32 MiB")
    assert seconds < BOUND_S


@pytest.mark.parametrize("fault", ["truncated", "html", "list", "wrong_types", "nested"])
def test_a_listing_that_is_not_a_listing_is_one_line_naming_the_host(hub, fault: str) -> None:
    hub.listing_fault = fault
    p, seconds = cli("models", "list", REPO)
    assert_one_line(p, _host(hub), f"listing {REPO}")
    assert seconds < BOUND_S


def test_a_range_read_that_trickles_ends_at_the_deadline(hub) -> None:
    hub.range_fault[FILE] = "trickle"
    hub.trickle_s = 0.5
    p, seconds = cli("inspect", f"{REPO}:Q4_K_M")
    assert_one_line(p, hub.cdn_url.removeprefix("http://"), f"within {DEADLINE_S} s")
    assert seconds < BOUND_S


@pytest.mark.parametrize(("fault", "says"), [("huge_size", "more than any real model file"), ("negative_size", "is negative")])
def test_impossible_file_sizes_are_refused_naming_host_and_field(hub, fault: str, says: str) -> None:
    hub.listing_fault = fault
    for args in (["models", "list", REPO], ["plan", f"{REPO}:Q4_K_M"]):
        p, seconds = cli(*args)
        assert_one_line(p, _host(hub), f"siblings[0].size of {FILE}", says)
        assert seconds < BOUND_S


def test_an_rpc_device_count_beyond_llama_cpp_is_refused() -> None:
    with FakeRpcServer(devices=2**32 - 1) as addr:
        p, seconds = cli("detect", "--no-bandwidth", "--rpc", addr)
    assert_one_line(p, f"rpc-server {addr}", "impossible device count", "4,294,967,295")
    assert seconds < BOUND_S


def test_the_rpc_query_child_is_capped_when_a_server_lies_to_libggml_alone() -> None:
    """Honest to both preflights, 2^32-1 devices to libggml's own connection: the child that asks is
    stopped by its memory cap or its time limit, and the machine's memory is never at stake."""
    os.environ["MOETUI_NET_TIMEOUT"] = str(DEADLINE_S)
    try:
        with FakeRpcServer(devices_later=2**32 - 1, honest_clients=2) as addr:
            t0 = time.monotonic()
            with pytest.raises(MoetuiError) as info:
                probe(addr, timeout=10)  # time or memory, whichever runs out first (CI: keep the test short)
            seconds = time.monotonic() - t0
    finally:
        del os.environ["MOETUI_NET_TIMEOUT"]
    message = str(info.value)
    assert f"rpc-server {addr}" in message and ("memory cap" in message or "was stopped" in message), message
    assert not SOURCE_PATH.search(message) and seconds < BOUND_S


@pytest.mark.parametrize(("free", "total", "says"), [
    (2**64 - 1, 2**64 - 1, "impossible total memory of device 0"),  # 16 EiB
    (64 << 30, 1 << 30, "impossible free memory of device 0: 64.00 GiB free of 1.00 GiB"),
], ids=["16EiB", "free-above-total"])
def test_rpc_memory_that_cannot_be_true_is_refused(free: int, total: int, says: str) -> None:
    with FakeRpcServer(free=free, total=total) as addr:
        p, seconds = cli("detect", "--no-bandwidth", "--rpc", addr)
    assert_one_line(p, f"rpc-server {addr}", says)
    assert seconds < BOUND_S


def test_a_malformed_rpc_memory_answer_is_in_moetuis_words() -> None:
    with FakeRpcServer(malformed_memory=True) as addr:
        p, seconds = cli("detect", "--no-bandwidth", "--rpc", addr)
    assert_one_line(p, f"rpc-server {addr}", "malformed answer")
    assert "GGML" not in p.stderr and seconds < BOUND_S


def test_a_download_that_stalls_ends_within_its_read_deadlines(hub) -> None:
    """A download cannot end within one deadline (gigabytes): each read waits at most the deadline, and
    huggingface_hub's retries of a read that brought nothing are bounded."""
    hub.stall_downloads[FILE] = 1 << 16
    p, seconds = cli("models", "download", f"{REPO}:Q4_K_M")
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("moetui: error:")]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(errors) == 1 and f"downloading {REPO}/{FILE}" in errors[0] and "sent nothing for 3 s" in errors[0], errors
    assert "resume" in errors[0] and seconds < BOUND_S  # two tries of one deadline each


def test_a_listing_of_more_files_than_a_repo_holds_is_refused_naming_the_host() -> None:
    import json

    from moetui.hardware.net_limits import MAX_LISTING_ENTRIES
    from moetui.hub.listing import parse_listing

    body = json.dumps({"siblings": [{"rfilename": f"x-{i}.gguf", "size": 1} for i in range(MAX_LISTING_ENTRIES + 1)]})
    with pytest.raises(MoetuiError, match=rf"hub\.test listed {MAX_LISTING_ENTRIES + 1:,} files, more than"):
        parse_listing(body.encode(), "me/m", None, "hub.test")


def test_a_malformed_rpc_answer_during_a_load_is_one_line_naming_the_host(tiny_moe: Path) -> None:
    """The worker's own libggml meets the malformed memory answer: it aborts; the user reads moetui's words."""
    from moetui.config import RunConfig
    from moetui.runtime.client import ModelWorker

    with FakeRpcServer(malformed_memory=True) as addr, ModelWorker() as worker:
        t0 = time.monotonic()
        with pytest.raises(MoetuiError) as info:
            worker.start(RunConfig(model_path=str(tiny_moe), n_ctx=256, n_threads=1, rpc_servers=[addr]))
    message = str(info.value).split("; log: ")[0]
    assert f"rpc-server {addr}" in message and "malformed answer" in message, message
    assert not SOURCE_PATH.search(message) and "\n" not in message and time.monotonic() - t0 < BOUND_S


def test_an_rpc_handshake_that_trickles_ends_at_the_deadline() -> None:
    with FakeRpcServer(trickle_s=0.5) as addr:
        p, seconds = cli("detect", "--no-bandwidth", "--rpc", addr)
    assert_one_line(p, f"rpc-server {addr}", f"within {DEADLINE_S} s")
    assert seconds < BOUND_S
