"""The demo model: a tiny synthetic proxy with Qwen3-30B-A3B's structure (random weights, exact shapes and
quant mix), written once into the user data dir. `moetui demo` builds it; the app offers it when nothing
else works (no model, no hub)."""

from __future__ import annotations

from pathlib import Path

from moetui.paths import data_dir

DEMO_SHAPE = "qwen3-30b-a3b"
DEMO_MIX = "Q4_K_M"


def demo_model_path(scale: str = "tiny") -> Path:
    return data_dir() / "models" / f"demo-{DEMO_SHAPE}-{scale}-{DEMO_MIX}.gguf"


def ensure_demo_model(scale: str = "tiny") -> Path:
    from moetui.model.proxy import write_proxy  # gguf and numpy: only when the demo model is written
    from moetui.model.shapes import load_shape, scaled

    path = demo_model_path(scale)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.partial")  # an interrupted write leaves no half model behind
        write_proxy(scaled(load_shape(DEMO_SHAPE), scale), tmp, DEMO_MIX)
        tmp.replace(path)
    return path
