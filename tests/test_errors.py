"""The error vocabulary: one classifier for worker and probe failures, and first_line for messages.
(The real worker's crash, hang, abort and context failures go through it in test_runtime_worker.py.)"""

from __future__ import annotations

import json

import pytest

from moetui.errors import (
    ConfigError,
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
