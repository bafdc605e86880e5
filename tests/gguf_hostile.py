"""Hostile GGUF headers for the reliability tests: a valid tiny proxy's metadata and tensor infos,
rewritten, serialised with moetui's own writer and served from memory (the weights are zeros the
reader never fetches), so thousands of inputs cost no disk."""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from moetui.model.gguf_writer import PlannedTensor, header_bytes
from moetui.model.proxy import metadata_for, plan_tensors
from moetui.model.shapes import list_shapes, load_shape, scaled

ALL_SHAPES = list_shapes()


@lru_cache(maxsize=None)
def proxy_parts(shape_name: str, mix: str = "Q4_K_M") -> tuple[dict[str, Any], list[PlannedTensor]]:
    shape = scaled(load_shape(shape_name), "tiny")
    return metadata_for(shape, mix), plan_tensors(shape, mix)


def data_bytes(tensors: list[PlannedTensor]) -> int:
    return sum(-(-t.nbytes // 32) * 32 for t in tensors)


class MemSource:
    """A ByteSource: the header bytes, then `data` zero bytes of weights, never materialised."""

    def __init__(self, head: bytes, data: int, name: str = "mem.gguf") -> None:
        self.head, self._size, self.name = head, len(head) + data, name
        self.reads = 0

    def size(self) -> int:
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        self.reads += 1
        end = min(offset + n, self._size)
        if offset >= end:
            return b""
        part = self.head[offset:end]
        return part + b"\0" * (end - offset - len(part))


def hostile_source(shape_name: str, **changes: Any) -> MemSource:
    """The tiny proxy of `shape_name` with metadata keys replaced ("{arch}" expands); None deletes a key."""
    md, tensors = proxy_parts(shape_name)
    md = dict(md)
    arch = md["general.architecture"]
    for key, value in changes.items():
        key = key.replace("{arch}", arch)
        if value is None:
            md.pop(key, None)
        else:
            md[key] = value
    head, _ = header_bytes(md, tensors)
    return MemSource(head, data_bytes(tensors))


def raw_kv(key: str, vtype: int, body: bytes) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + body


# --- typed serialisation, for fuzzing value *types* as well as values ------------------------------------
from gguf import GGUFValueType  # noqa: E402

SCALAR_FORMATS = {GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H",
                  GGUFValueType.INT16: "h", GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i",
                  GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?", GGUFValueType.UINT64: "Q",
                  GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d"}


def type_of(value: Any) -> tuple[int, Any]:
    """(GGUF value type, value) as moetui's writer stores a Python value; arrays as (ARRAY, (item type, items))."""
    if isinstance(value, bool):
        return GGUFValueType.BOOL, value
    if isinstance(value, int):
        if 0 <= value < 2**32:
            return GGUFValueType.UINT32, value
        return (GGUFValueType.INT32, value) if -(2**31) <= value < 0 else (GGUFValueType.UINT64, value)
    if isinstance(value, float):
        return GGUFValueType.FLOAT32, value
    if isinstance(value, str):
        return GGUFValueType.STRING, value
    items = list(value)
    first = items[0] if items else 0
    sub = GGUFValueType.STRING if isinstance(first, str) else GGUFValueType.FLOAT32 if isinstance(first, float) \
        else GGUFValueType.INT32  # the writer stores int arrays as INT32
    return GGUFValueType.ARRAY, (sub, items)


def _pack_str(s: str | bytes) -> bytes:
    b = s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(b)) + b


def pack_typed(vtype: int, value: Any) -> bytes:
    """Bytes of one value of `vtype`; values out of the type's range wrap (a fuzzer wants that)."""
    if vtype == GGUFValueType.STRING:
        return _pack_str(value if isinstance(value, (str, bytes)) else str(value))
    if vtype == GGUFValueType.ARRAY:
        sub, items = value
        return struct.pack("<IQ", sub, len(items)) + b"".join(pack_typed(sub, v) for v in items)
    fmt = SCALAR_FORMATS.get(vtype)
    if fmt is None:  # an unknown type id: no body
        return b""
    if fmt in "fd":
        v = float(value) if isinstance(value, (int, float)) else 0.0
        try:
            return struct.pack("<" + fmt, v)
        except OverflowError:
            return struct.pack("<" + fmt, float("inf"))
    if fmt == "?":
        return struct.pack("<B", int(bool(value)) if not isinstance(value, int) else value & 0xFF)
    bits = struct.calcsize(fmt) * 8
    v = int(value) if isinstance(value, (int, bool)) else 0
    v &= (1 << bits) - 1
    return struct.pack("<" + fmt.upper(), v)


def serialise(kvs: list[tuple[str, int, Any]], tensors: list[tuple[str, tuple[int, ...], int, int]],
              version: int = 3, alignment_pad: int = 32) -> bytes:
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)))
    for key, vtype, value in kvs:
        out += _pack_str(key) + struct.pack("<I", vtype) + pack_typed(vtype, value)
    for name, shape, ttype, offset in tensors:
        out += _pack_str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d & (2**64 - 1)) for d in shape)
        out += struct.pack("<IQ", ttype & 0xFFFFFFFF, offset & (2**64 - 1))
    out += b"\0" * ((-len(out)) % alignment_pad)
    return bytes(out)


def typed_parts(shape_name: str) -> tuple[list[tuple[str, int, Any]], list[tuple[str, tuple[int, ...], int, int]], int]:
    """A tiny proxy as (typed kvs, tensor infos, data bytes): the input every fuzz example mutates."""
    md, planned = proxy_parts(shape_name)
    kvs = [(k, *type_of(v)) for k, v in md.items()]
    infos, offset = [], 0
    for t in planned:
        infos.append((t.name, tuple(t.shape), int(t.type), offset))
        offset += -(-t.nbytes // 32) * 32
    return kvs, infos, offset
