"""ModelInfo of a full-size model from its shape preset alone (no file): the exact header a proxy of that
shape and quant mix would have, read from memory. Lets the planner, tests and tuning/ answer for real
sizes (Qwen3-30B-A3B on a 12 GB card) without a 17 GB download."""

from __future__ import annotations

from dataclasses import dataclass

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
    return info
