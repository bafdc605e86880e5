"""The error vocabulary: one classifier for worker and probe failures, and first_line for messages.
(The real worker's crash, hang, abort and context failures go through it in test_runtime_worker.py.)"""

from __future__ import annotations

import json

import pytest

from moetui.errors import (
    ConfigError,
    in_words,
    network_reason,
    DraftMismatch,
    ErrorKind,
    ModelFileError,
    WorkerError,
    classify_failure,
    first_line,
)

OOM_TAIL = "llama_model_load: ggml_backend_cuda_buffer_type_alloc_buffer: cudaMalloc failed: out of memory\n"


@pytest.mark.parametrize(("exc", "kind"), [
    (DraftMismatch("vocab differs"), ErrorKind.DRAFT_MISMATCH),
    (ConfigError("n_ubatch too large"), ErrorKind.CONFIG),
    (ModelFileError("/m.gguf: no such model file"), ErrorKind.LOAD),
    (ValueError("Failed to load model from file: /m.gguf"), ErrorKind.LOAD),
    (ValueError("Failed to create llama_context"), ErrorKind.CONTEXT),
    (ModelFileError("Failed to load model: unable to allocate CUDA0 buffer"), ErrorKind.OOM),
    (RuntimeError("something else"), ErrorKind.ERROR),
    (WorkerError("killed by SIGKILL", kind="crash"), ErrorKind.CRASH),  # the client decided already
    (WorkerError("no progress", kind=ErrorKind.HANG), ErrorKind.HANG),
])
def test_an_exception_is_classified_by_type_then_message(exc: BaseException, kind: ErrorKind) -> None:
    assert classify_failure(exc) is kind


def test_an_allocation_failure_in_the_log_makes_a_crash_or_error_oom() -> None:
    assert classify_failure(kind="crash", log_tail=OOM_TAIL) is ErrorKind.OOM
    assert classify_failure(kind=ErrorKind.CONTEXT, log_tail=OOM_TAIL) is ErrorKind.OOM
    assert classify_failure(kind="error", log_tail="load_tensors: failed to allocate buffer") is ErrorKind.OOM
    assert classify_failure(kind="crash", log_tail="ggml.c:123: GGML_ASSERT(x) failed") is ErrorKind.CRASH


def test_a_known_cause_stays_whatever_the_log_says() -> None:
    for kind in (ErrorKind.HANG, ErrorKind.LOAD, ErrorKind.CONFIG, ErrorKind.DRAFT_MISMATCH, ErrorKind.STATE):
        assert classify_failure(kind=kind, log_tail=OOM_TAIL) is kind


def test_a_kind_this_version_does_not_know_reads_as_error() -> None:
    assert classify_failure(kind="from-the-future") is ErrorKind.ERROR
    assert WorkerError("x", kind="nonsense").kind is ErrorKind.ERROR


def test_kinds_are_written_to_json_as_their_value() -> None:
    sent = json.dumps({"ev": "error", "kind": classify_failure(ConfigError("bad"))})
    assert json.loads(sent)["kind"] == "config"
    assert ErrorKind.parse(json.loads(sent)["kind"]) is ErrorKind.CONFIG
    assert ErrorKind.OOM == "oom"  # saved profiles and probes compare with plain strings


@pytest.mark.parametrize(("exc", "line"), [
    (ValueError(""), "ValueError"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
    (RuntimeError("\n\n  the real reason  \nmore detail"), "the real reason"),
    (OSError("one line"), "one line"),
    ("", ""),
    ("text\nrest", "text"),
])
def test_first_line_never_raises(exc: BaseException | str, line: str) -> None:
    assert first_line(exc) == line


def test_first_line_cuts_to_the_limit() -> None:
    assert first_line(ValueError("x" * 500), 160) == "x" * 160


# ---- raw internals in words ----------------------------------------------------------------------
def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_a_refused_connection_reads_in_words() -> None:
    import socket

    with pytest.raises(OSError) as info:
        socket.create_connection(("127.0.0.1", _closed_port()), timeout=2)
    assert network_reason(info.value) == "it refused the connection (nothing listens there)"
    assert in_words(info.value).startswith("cannot connect: it refused")


def test_a_name_that_cannot_be_looked_up_reads_in_words() -> None:
    import socket

    with pytest.raises(socket.gaierror) as info:
        socket.getaddrinfo("no-such-host.invalid", 443)
    words = network_reason(info.value)
    assert "could not be looked up" in words or "has no address" in words
    assert "Errno" not in words
    # the text httpx wraps it in reads the same
    assert network_reason(RuntimeError("[Errno -2] Name or service not known")) == \
        "its name could not be looked up (no network connection, or no DNS)"


def test_a_file_error_names_the_file_and_a_bug_says_it_is_one(tmp_path) -> None:
    with pytest.raises(OSError) as info:
        open(tmp_path / "missing.gguf")
    assert in_words(info.value) == f"{tmp_path / 'missing.gguf'}: no such file or directory"
    assert in_words(ConfigError("context must be positive")) == "context must be positive"
    bug = in_words(KeyError("n_ctx"))
    assert bug.startswith("unexpected error (KeyError") and "report" in bug


def test_every_error_kind_has_words() -> None:
    for kind in ErrorKind:
        assert kind.words and "_" not in kind.words
    assert ErrorKind.FAILED_BEFORE.words == "failed in an earlier tune"


def test_the_ui_and_the_tuner_name_plan_modes_alike() -> None:
    from moetui.sizing.explain import MODE_WORDS
    from moetui.ui.widgets.format import PLAN_MODES

    assert PLAN_MODES == MODE_WORDS and all("_" not in w for w in MODE_WORDS.values())
