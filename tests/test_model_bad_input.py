"""Bad GGUF input: a one-line error and exit 2 from the CLI, a typed exception in code, bounded memory."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from moetui.errors import ModelFileError
from moetui.model.gguf_writer import header_bytes
from moetui.model.inspect import inspect_file


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, timeout=60)


def _assert_clean_failure(path: Path, needle: str) -> None:
    r = _cli("inspect", str(path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert needle in r.stderr


def test_missing_path(tmp_path: Path) -> None:
    _assert_clean_failure(tmp_path / "nope.gguf", "no such file")


def test_directory(tmp_path: Path) -> None:
    _assert_clean_failure(tmp_path, "is a directory")


def test_not_gguf(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04 this is a zip, not a gguf" * 10)
    _assert_clean_failure(p, "not a GGUF")


def test_truncated_header(tiny_moe: Path, tmp_path: Path) -> None:
    p = tmp_path / "cut.gguf"
    p.write_bytes(tiny_moe.read_bytes()[:5000])
    _assert_clean_failure(p, "truncated")


def test_truncated_data(tiny_moe: Path, tmp_path: Path) -> None:
    data = tiny_moe.read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[: len(data) - 100_000])
    with pytest.raises(ModelFileError, match="truncated"):
        inspect_file(p)


@pytest.mark.parametrize("n_tensors,n_kv", [(2**62, 1), (1, 2**62), (10**6 + 1, 0)])
def test_absurd_counts(tmp_path: Path, n_tensors: int, n_kv: int) -> None:
    p = tmp_path / "absurd.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + b"\0" * 64)
    with pytest.raises(ModelFileError, match="corrupt"):
        inspect_file(p)


def test_absurd_array_length_does_not_allocate(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.tokens"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 2**40)  # ARRAY of STRING, 2^40 items
    p = tmp_path / "array.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body + b"\0" * 100)
    with pytest.raises(ModelFileError, match="corrupt"):
        inspect_file(p)


def test_absurd_string_length(tmp_path: Path) -> None:
    p = tmp_path / "string.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**50) + b"\0" * 100)
    with pytest.raises(ModelFileError, match="corrupt"):
        inspect_file(p)


def test_unknown_architecture(tmp_path: Path) -> None:
    """No allow-list: an architecture moetui has no table for is read from its keys and tensors with a plain
    note; one without even a layer count is a one-line error, never a traceback."""
    head, _ = header_bytes({"general.architecture": "frobnicator9000"}, [])
    p = tmp_path / "unknown.gguf"
    p.write_bytes(head)
    with pytest.raises(ModelFileError, match="frobnicator9000.block_count"):
        inspect_file(p)
    _assert_clean_failure(p, "block_count")
    head, _ = header_bytes({"general.architecture": "frobnicator9000", "frobnicator9000.block_count": 2,
                            "frobnicator9000.embedding_length": 64, "frobnicator9000.attention.head_count": 4}, [])
    p.write_bytes(head)
    info = inspect_file(p)
    assert info.n_layers == 2 and any("frobnicator9000" in n and "not in moetui's table" in n for n in info.notes)


def test_split_model_missing_part(tiny_moe: Path, tmp_path: Path) -> None:
    p = tmp_path / "model-00001-of-00002.gguf"
    p.write_bytes(tiny_moe.read_bytes())
    with pytest.raises(ModelFileError, match="missing"):
        inspect_file(p)
