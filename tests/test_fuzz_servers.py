"""Hypothesis on what servers answer (issue 30): hub listings (structure-aware: a real listing's fields
given other types, sizes from the whole integer range, bodies cut anywhere, random bytes) and RPC answers
(random bytes for HELLO, any device count, any memory figures). Each input gives a checked result (every
size a real file could have; 1..16 devices; free <= total <= 1 PiB) or a MoetuiError, within a time bound.

Examples: MOETUI_FUZZ_PROFILE=ci (default: 200 listings, 60 RPC answers, 300 memory pairs) or =long (x10).
Outcome counts are printed at the end of the module (with -s) and written to $MOETUI_FUZZ_SERVERS_REPORT.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moetui.errors import MoetuiError
from moetui.hardware.net_limits import MAX_DEVICE_BYTES, MAX_FILE_BYTES, MAX_RPC_DEVICES
from moetui.hardware.rpc import check_device_memory, preflight
from moetui.hub.listing import parse_listing

from rpc_fake import FakeRpcServer

pytestmark = pytest.mark.fuzz
LONG = os.environ.get("MOETUI_FUZZ_PROFILE", "ci") == "long"
_common = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                      HealthCheck.function_scoped_fixture])
LISTINGS = settings(max_examples=2000 if LONG else 200, **_common)
RPC = settings(max_examples=600 if LONG else 60, **_common)
MEMORY = settings(max_examples=3000 if LONG else 300, **_common)
BOUND_S = 10.0  # per input; the deadline below is 1 s
OUTCOMES: Counter[str] = Counter()
HOST = "hub.test:443"
SHA = "a" * 64

any_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                        max_leaves=12)
hostile_size = st.integers(-2**70, 2**70) | st.sampled_from([-1, -5, 10**15, MAX_FILE_BYTES + 1]) | any_json
NAMES = ["m-Q4_K_M.gguf", "m-Q8_0.gguf", "m-00001-of-00002.gguf", "m-00002-of-00002.gguf", "README.md"]


def sometimes_hostile(honest: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The honest value seven times in eight: most inputs get past the first field to the next."""
    return st.integers(0, 7).flatmap(lambda n: hostile if n == 0 else honest)


size_value = sometimes_hostile(st.integers(0, 10**12) | st.just(MAX_FILE_BYTES), hostile_size)


@st.composite
def sibling(draw: st.DrawFn) -> Any:
    s: dict[str, Any] = {"rfilename": draw(sometimes_hostile(st.sampled_from(NAMES), any_json)),
                         "size": draw(size_value)}
    if draw(st.booleans()):
        s["lfs"] = draw(sometimes_hostile(st.fixed_dictionaries({"size": size_value,
                                                                 "sha256": sometimes_hostile(st.just(SHA), any_json)}),
                                          any_json))
    if draw(st.booleans()):
        del s[draw(st.sampled_from(["rfilename", "size"]))]
    return s if draw(st.integers(0, 9)) else draw(any_json)


@st.composite
def listing_body(draw: st.DrawFn) -> bytes:
    info: Any = {"id": "me/m", "sha": draw(st.just("c" * 40) | any_json),
                 "siblings": draw(st.lists(sibling(), max_size=6) | any_json)}
    if not draw(st.integers(0, 9)):
        info = draw(any_json)
    body = json.dumps(info).encode()
    how = draw(st.integers(0, 9))
    if how == 0:
        return body[: draw(st.integers(0, len(body)))]  # cut anywhere
    if how == 1:
        return draw(st.binary(max_size=200))
    return body


@pytest.fixture(scope="module", autouse=True)
def _report():  # type: ignore[no-untyped-def]
    yield
    total = sum(OUTCOMES.values())
    print(f"\nfuzz servers: {total} inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))
    if os.environ.get("MOETUI_FUZZ_SERVERS_REPORT"):
        with open(os.environ["MOETUI_FUZZ_SERVERS_REPORT"], "w") as fh:
            json.dump({"inputs": total, "outcomes": dict(OUTCOMES)}, fh, indent=2)


@LISTINGS
@given(listing_body())
def test_a_listing_is_checked_or_refused_by_host_and_field(body: bytes) -> None:
    t0 = time.monotonic()
    try:
        listing = parse_listing(body, "me/m", None, HOST)
    except MoetuiError as exc:
        assert HOST in str(exc) and "\n" not in str(exc)
        OUTCOMES["listing refused"] += 1
    else:
        for group in listing.quants:
            assert all(isinstance(f.size, int) and 0 <= f.size <= MAX_FILE_BYTES for f in group.files)
            assert all(isinstance(f.path, str) and f.path for f in group.files)
        OUTCOMES["listing accepted"] += 1
    assert time.monotonic() - t0 < BOUND_S


@RPC
@given(answer=st.one_of(st.binary(max_size=64).map(lambda b: ("bytes", b)),
                        (st.integers(0, 20) | st.integers(0, 2**32 - 1)).map(lambda n: ("count", n))))
def test_an_rpc_answer_is_checked_or_refused_naming_the_host(answer: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOETUI_NET_TIMEOUT", "1")
    kind, value = answer
    server = FakeRpcServer(reply=value) if kind == "bytes" else FakeRpcServer(devices=value)
    t0 = time.monotonic()
    try:
        got = preflight(server.address, timeout=1.0)
    except MoetuiError as exc:
        assert server.address in str(exc) and "\n" not in str(exc)
        OUTCOMES[f"rpc {kind} refused"] += 1
    else:
        assert 1 <= got.n_devices <= MAX_RPC_DEVICES
        OUTCOMES[f"rpc {kind} accepted"] += 1
    finally:
        server.close()
    assert time.monotonic() - t0 < BOUND_S


@MEMORY
@given(st.integers(0, 2**64 - 1) | st.sampled_from([0, 1 << 30, MAX_DEVICE_BYTES, MAX_DEVICE_BYTES + 1]),
       st.integers(0, 2**64 - 1) | st.sampled_from([0, 1 << 30, MAX_DEVICE_BYTES, MAX_DEVICE_BYTES + 1]))
def test_rpc_memory_figures_are_believed_only_when_they_can_be_true(free: int, total: int) -> None:
    try:
        check_device_memory("10.0.0.2:50052", 0, free, total)
    except MoetuiError as exc:
        assert "10.0.0.2:50052" in str(exc) and "memory of device 0" in str(exc)
        assert free > total or max(free, total) > MAX_DEVICE_BYTES
        OUTCOMES["memory refused"] += 1
    else:
        assert free <= total <= MAX_DEVICE_BYTES
        OUTCOMES["memory accepted"] += 1
