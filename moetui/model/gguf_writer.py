"""A streaming GGUF v3 writer: header first, then each tensor's bytes from a generator, so a model of any
size is written at disk speed with constant memory. Value types come from the `gguf` package."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gguf import GGMLQuantizationType, GGUFValueType

from moetui.model.gguf_header import tensor_nbytes

ALIGNMENT = 32


@dataclass
class PlannedTensor:
    name: str
    shape: tuple[int, ...]  # ggml order
    type: GGMLQuantizationType
    write: Callable[[Callable[[bytes | memoryview], None], int], None]  # (sink, nbytes) -> writes exactly nbytes

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.type, self.shape)


def _pack_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pack_value(value: Any) -> tuple[int, bytes]:
    if isinstance(value, bool):
        return GGUFValueType.BOOL, struct.pack("<?", value)
    if isinstance(value, int):
        # llama.cpp checks key types strictly and its counts and ids are u32
        if 0 <= value < 2**32:
            return GGUFValueType.UINT32, struct.pack("<I", value)
        if -(2**31) <= value < 0:
            return GGUFValueType.INT32, struct.pack("<i", value)
        return GGUFValueType.UINT64, struct.pack("<Q", value)
    if isinstance(value, float):
        return GGUFValueType.FLOAT32, struct.pack("<f", value)
    if isinstance(value, str):
        return GGUFValueType.STRING, _pack_string(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return GGUFValueType.ARRAY, struct.pack("<IQ", GGUFValueType.INT32, 0)
        first = value[0]
        if isinstance(first, str):
            body = b"".join(_pack_string(v) for v in value)
            return GGUFValueType.ARRAY, struct.pack("<IQ", GGUFValueType.STRING, len(value)) + body
        if isinstance(first, float):
            return GGUFValueType.ARRAY, struct.pack("<IQ", GGUFValueType.FLOAT32, len(value)) + struct.pack(f"<{len(value)}f", *value)
        return GGUFValueType.ARRAY, struct.pack("<IQ", GGUFValueType.INT32, len(value)) + struct.pack(f"<{len(value)}i", *value)
    raise TypeError(f"cannot store {type(value).__name__} in GGUF metadata")


def header_bytes(metadata: dict[str, Any], tensors: list[PlannedTensor]) -> tuple[bytes, list[int]]:
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, value in metadata.items():
        vtype, body = _pack_value(value)
        out += _pack_string(key) + struct.pack("<I", vtype) + body
    offsets, offset = [], 0
    for t in tensors:
        offsets.append(offset)
        out += _pack_string(t.name) + struct.pack("<I", len(t.shape)) + struct.pack(f"<{len(t.shape)}Q", *t.shape)
        out += struct.pack("<IQ", int(t.type), offset)
        offset += (t.nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
    out += b"\0" * ((-len(out)) % ALIGNMENT)
    return bytes(out), offsets


def write_gguf(path: Path, metadata: dict[str, Any], tensors: list[PlannedTensor],
               progress: Callable[[int, int], None] | None = None) -> int:
    """Write to PATH.part, then rename, so an interrupted write never leaves a file that looks whole."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    head, _ = header_bytes(metadata, tensors)
    total = len(head) + sum((t.nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT for t in tensors)
    written = 0
    try:
        with open(part, "wb", buffering=0) as fh:
            def sink(b: bytes | memoryview) -> None:
                nonlocal written
                view = memoryview(b)
                while view:
                    n = fh.write(view)
                    view = view[n:]
                    written += n

            sink(head)
            for t in tensors:
                start = written
                t.write(sink, t.nbytes)
                if written - start != t.nbytes:
                    raise RuntimeError(f"{t.name}: wrote {written - start} bytes, expected {t.nbytes}")
                sink(b"\0" * ((-t.nbytes) % ALIGNMENT))
                if progress:
                    progress(written, total)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return total


def repeat_writer(pattern: bytes) -> Callable[[Callable[[bytes | memoryview], None], int], None]:
    view = memoryview(pattern)

    def write(sink: Callable[[bytes | memoryview], None], nbytes: int) -> None:
        left = nbytes
        while left > 0:
            n = min(left, len(view))
            sink(view[:n])
            left -= n

    return write


def const_writer(chunk: bytes) -> Callable[[Callable[[bytes | memoryview], None], int], None]:
    return repeat_writer(chunk * max(1, (1 << 16) // len(chunk)))
