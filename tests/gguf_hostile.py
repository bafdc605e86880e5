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
