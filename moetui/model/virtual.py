"""ModelInfo of a full-size model from its shape preset alone (no file): the exact header a proxy of that
shape and quant mix would have, read from memory. Lets the planner, tests and tuning/ answer for real
sizes (Qwen3-30B-A3B on a 12 GB card) without a 17 GB download."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moetui.model.gguf_writer import header_bytes
from moetui.model.info import ModelInfo
from moetui.model.inspect import inspect_source
from moetui.model.proxy import metadata_for, plan_tensors
from moetui.model.shapes import load_shape, scaled


@dataclass
class _HeaderOnly:
    name: str
    data: bytes
    total: int

    def size(self) -> int:
        return self.total

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def shape_mix(shape_name: str) -> str:
    """The quant mix a shape preset is sized with when none is named (gpt-oss ships MXFP4 experts)."""
    return "MXFP4" if shape_name.lower().startswith("gpt-oss") else "Q4_K_M"


def model_info_for_shape(shape_name: str, mix: str = "Q4_K_M", scale: str = "full") -> ModelInfo:
    shape = load_shape(shape_name)
    if scale != "full":
        shape = scaled(shape, scale)
    tensors = plan_tensors(shape, mix)
    head, _ = header_bytes(metadata_for(shape, mix), tensors)
    total = len(head) + sum(-(-t.nbytes // 32) * 32 for t in tensors)
    info = inspect_source(_HeaderOnly(f"{shape_name}-{mix}.gguf", head, total))
    info.header_parts = [(f"{shape_name}-{mix}.gguf", head, total)]
    return info


def write_sparse(header: bytes, file_size: int, path: str | Path) -> Path:
    """A GGUF with this header and holes where its tensor data would be: what llama.cpp's dry run
    (no_alloc, load mode none) needs of a model that is not on this disk; the holes take no disk space."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(max(file_size, len(header)))
    return path


def write_sparse_shape(shape_name: str, path: str | Path, mix: str = "Q4_K_M", scale: str = "full") -> Path:
    """The header of a shape preset's proxy over sparse data (a full-size model in a few MB of disk)."""
    shape = load_shape(shape_name)
    if scale != "full":
        shape = scaled(shape, scale)
    tensors = plan_tensors(shape, mix)
    head, _ = header_bytes(metadata_for(shape, mix), tensors)
    return write_sparse(head, len(head) + sum(-(-t.nbytes // 32) * 32 for t in tensors), path)


def write_sparse_parts(parts: list[tuple[str, bytes, int]], folder: str | Path) -> Path:
    """Every file of a model (split names kept, so llama.cpp finds the other parts) as its header over
    sparse data in `folder`; returns the first file's path."""
    paths = [write_sparse(head, size, Path(folder) / Path(name).name) for name, head, size in parts]
    return paths[0]
