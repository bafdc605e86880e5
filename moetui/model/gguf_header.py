"""A bounded GGUF header reader.

It reads only the header (metadata and tensor infos), never the weights, from any byte source: a local
file or an HTTP range reader. Every length in the header is checked against hard limits and against the
bytes that remain, so a corrupt or hostile header gives a ModelFileError instead of a huge allocation or
a hang. Value types and quant block sizes come from the `gguf` package.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from moetui.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_STRING = 64 * 2**20
MAX_ARRAY = 50_000_000
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
MAX_ALIGNMENT = 1 << 24
MAX_TENSOR_NAME = 64  # GGML_MAX_NAME, terminating NUL included

_SCALAR = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class ByteSource(Protocol):
    """Random access to the bytes of one GGUF file."""

    name: str

    def size(self) -> int: ...

    def read(self, offset: int, n: int) -> bytes: ...


class FileSource:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.exists():
            raise ModelFileError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise ModelFileError(f"{self.path}: is a directory, not a GGUF file")
        if not self.path.is_file():
            # a FIFO or a device: opening one blocks or reads forever
            raise ModelFileError(f"{self.path}: not a regular file")
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise ModelFileError(f"{self.path}: cannot open ({exc.strerror})") from exc
        self._size = os.fstat(self._fh.fileno()).st_size

    def size(self) -> int:
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        self._fh.seek(offset)
        return self._fh.read(n)

    def close(self) -> None:
        self._fh.close()


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: ne[0] is the row length
    type: GGMLQuantizationType
    offset: int  # relative to the data section of its file
    nbytes: int
    split: int = 0  # which file of a split model holds it

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return self.type.name


@dataclass
class GGUFHeader:
    source_name: str
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    alignment: int
    data_offset: int  # where tensor data starts in the file
    file_size: int
    header_bytes: bytes = field(default=b"", repr=False)  # raw header, for hashing a model's identity

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


def tensor_nbytes(type_: GGMLQuantizationType, shape: tuple[int, ...]) -> int:
    block, size = GGML_QUANT_SIZES[type_]
    n = 1
    for d in shape:
        n *= d
    if shape and shape[0] % block:
        raise ModelFileError(f"tensor row of {shape[0]} elements is not a multiple of {type_.name}'s block {block}")
    return n // block * size


class _Cursor:
    """Sequential reads over a ByteSource, fetched in chunks so remote sources make few requests."""

    def __init__(self, src: ByteSource, chunk: int = 1 << 20) -> None:
        self.src = src
        self.total = src.size()
        self.pos = 0
        self.chunk = chunk
        self._buf = b""
        self._buf_start = 0
        self._raw = bytearray()

    def remaining(self) -> int:
        return self.total - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.total:
            raise ModelFileError(
                f"{self.src.name}: truncated header (needs byte {self.pos + n:,}, file has {self.total:,})"
            )
        end = self.pos + n
        buf_end = self._buf_start + len(self._buf)
        if not (self._buf_start <= self.pos and end <= buf_end):
            want = max(n, self.chunk)
            self._buf = self.src.read(self.pos, min(want, self.total - self.pos))
            self._buf_start = self.pos
            if len(self._buf) < n:
                raise ModelFileError(f"{self.src.name}: truncated header (short read at byte {self.pos:,})")
        rel = self.pos - self._buf_start
        out = self._buf[rel : rel + n]
        self.pos = end
        self._raw += out
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING or n > self.remaining():
            raise ModelFileError(f"{self.src.name}: corrupt header (string of {n:,} bytes)")
        return self.take(n).decode("utf-8", errors="replace")


def _read_value(cur: _Cursor, vtype: int, depth: int = 0) -> Any:
    try:
        vt = GGUFValueType(vtype)
    except ValueError:
        raise ModelFileError(f"{cur.src.name}: corrupt header (unknown value type {vtype})") from None
    if vt == GGUFValueType.STRING:
        return cur.string()
    if vt == GGUFValueType.ARRAY:
        if depth > 2:
            raise ModelFileError(f"{cur.src.name}: corrupt header (arrays nested too deep)")
        item_type = cur.unpack("<I")
        n = cur.unpack("<Q")
        if n > MAX_ARRAY or n > cur.remaining():
            raise ModelFileError(f"{cur.src.name}: corrupt header (array of {n:,} items)")
        if item_type in {int(t) for t in _SCALAR}:
            fmt = _SCALAR[GGUFValueType(item_type)]
            size = struct.calcsize(fmt)
            raw = cur.take(size * n)
            return list(struct.unpack(f"<{n}{fmt[1]}", raw))
        return [_read_value(cur, item_type, depth + 1) for _ in range(n)]
    return cur.unpack(_SCALAR[vt])


def read_header(src: ByteSource, split: int = 0) -> GGUFHeader:
    cur = _Cursor(src)
    if cur.total < 24:
        if cur.total >= 4 and src.read(0, 4) != GGUF_MAGIC:
            raise ModelFileError(f"{src.name}: not a GGUF file")
        raise ModelFileError(f"{src.name}: truncated ({cur.total} bytes, not a GGUF header)")
    if cur.take(4) != GGUF_MAGIC:
        raise ModelFileError(f"{src.name}: not a GGUF file (bad magic)")
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise ModelFileError(f"{src.name}: unsupported GGUF version {version}")
    n_tensors = cur.unpack("<Q")
    n_kv = cur.unpack("<Q")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelFileError(f"{src.name}: corrupt header ({n_tensors:,} tensors, {n_kv:,} metadata keys)")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = _read_value(cur, cur.unpack("<I"))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (isinstance(alignment, bool) or not isinstance(alignment, int) or not 0 < alignment <= MAX_ALIGNMENT
            or alignment & (alignment - 1)):
        raise ModelFileError(f"{src.name}: corrupt header (general.alignment {str(alignment)[:40]!s})")
    names: set[str] = set()
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = cur.string()
        # llama.cpp's own limits (GGML_MAX_NAME, unique names, aligned offsets): what it refuses, we refuse
        if len(name.encode("utf-8", "replace")) >= MAX_TENSOR_NAME:
            raise ModelFileError(f"{src.name}: corrupt header (tensor name of {len(name):,} characters)")
        if name in names:
            raise ModelFileError(f"{src.name}: corrupt header (tensor {name} appears twice)")
        names.add(name)
        n_dims = cur.unpack("<I")
        if n_dims > MAX_DIMS:
            raise ModelFileError(f"{src.name}: corrupt header (tensor {name} has {n_dims} dims)")
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        raw_type = cur.unpack("<I")
        offset = cur.unpack("<Q")
        try:
            ttype = GGMLQuantizationType(raw_type)
        except ValueError:
            raise ModelFileError(f"{src.name}: tensor {name} has unknown type {raw_type}") from None
        if offset % alignment:
            raise ModelFileError(f"{src.name}: corrupt header (tensor {name} at offset {offset:,}, not a multiple "
                                 f"of the alignment {alignment})")
        tensors.append(TensorInfo(name, shape, ttype, offset, tensor_nbytes(ttype, shape), split))
    data_offset = (cur.pos + alignment - 1) // alignment * alignment
    header = GGUFHeader(src.name, version, metadata, tensors, alignment, data_offset, cur.total, bytes(cur._raw))
    _check_data_fits(header)
    return header


def _check_data_fits(h: GGUFHeader) -> None:
    if not h.tensors:
        return
    end = max(t.offset + t.nbytes for t in h.tensors)
    if h.data_offset + end > h.file_size:
        raise ModelFileError(
            f"{h.source_name}: truncated (tensor data ends at byte {h.data_offset + end:,}, "
            f"file has {h.file_size:,}; was a download cut short?)"
        )


def read_file_header(path: str | os.PathLike[str]) -> GGUFHeader:
    src = FileSource(path)
    try:
        return read_header(src)
    finally:
        src.close()
