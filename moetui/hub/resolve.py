"""One way to turn what a user types into a ModelInfo: a local GGUF path, a shape preset ("qwen3-30b-a3b"
or "qwen3-30b-a3b:Q8_0": the exact header of the real model, held in memory, for planning a model you do
not have), or a Hugging Face reference ("owner/repo:Q4_K_M", read remotely or from the HF cache)."""

from __future__ import annotations

from pathlib import Path

from moetui.errors import ModelFileError
from moetui.model.info import ModelInfo
from moetui.model.inspect import inspect_file
from moetui.hub.remote import inspect_ref
from moetui.model.quant_mix import MIXES
from moetui.model.shapes import list_shapes
from moetui.model.virtual import model_info_for_shape, shape_mix


def _as_shape_ref(ref: str) -> tuple[str, str] | None:
    name, _, mix = ref.partition(":")
    shapes = {s.lower(): s for s in list_shapes()}
    if name.lower() not in shapes:
        return None
    mix = (mix or "").upper() or shape_mix(name)
    if mix not in MIXES:
        raise ModelFileError(f"{ref}: unknown quant mix {mix!r} (one of {', '.join(MIXES)})")
    return shapes[name.lower()], mix


def resolve_model(ref: str) -> ModelInfo:
    path = Path(ref).expanduser()
    if path.exists():
        return inspect_file(path)
    shape = _as_shape_ref(ref)
    if shape:
        return model_info_for_shape(*shape)
    return inspect_ref(ref)
