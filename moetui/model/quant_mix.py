"""Which quant type each tensor gets in a named mix (Q4_K_M, Q8_0, MXFP4...), following the rules of
llama.cpp's llama-quant.cpp closely enough that a proxy's size matches the published file's."""

from __future__ import annotations

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from moetui.errors import ConfigError
from moetui.model.shapes import Shape
from moetui.model.tensor_layout import TensorSpec

# mix -> (default type, llama.cpp LLAMA_FTYPE id written to general.file_type)
MIXES: dict[str, tuple[T, int]] = {
    "F16": (T.F16, 1),
    "BF16": (T.BF16, 32),
    "Q8_0": (T.Q8_0, 7),
    "Q6_K": (T.Q6_K, 18),
    "Q5_K_M": (T.Q5_K, 17),
    "Q4_K_M": (T.Q4_K, 15),
    "Q4_K_S": (T.Q4_K, 14),
    "Q4_0": (T.Q4_0, 2),
    "Q3_K_M": (T.Q3_K, 12),
    "Q2_K": (T.Q2_K, 10),
    "MXFP4": (T.Q8_0, 38),  # gpt-oss's native format: experts MXFP4, the rest Q8_0
}

# When a row is not a multiple of a k-quant's 256 block, llama.cpp falls back to a 32-block type.
_FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0,
             T.MXFP4: T.Q8_0, T.Q8_0: T.F16, T.Q4_0: T.F16, T.Q5_0: T.F16, T.Q5_1: T.F16}


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def quant_type(spec: TensorSpec, shape: Shape, mix: str) -> T:
    if mix not in MIXES:
        raise ConfigError(f"unknown quant mix {mix!r}; one of {', '.join(MIXES)}")
    if spec.kind != "weight" or len(spec.shape) < 2:
        return T.F32
    default, _ = MIXES[mix]
    name, il, n = spec.name, spec.layer or 0, shape.n_layers
    t = default
    is_expert = "_exps." in name
    if name == "output.weight" or (name == "token_embd.weight" and shape.tie_embeddings):
        t = T.Q8_0 if mix in ("MXFP4", "Q8_0") else (default if mix in ("F16", "BF16", "Q4_0") else T.Q6_K)
    elif mix == "MXFP4":
        t = T.MXFP4 if is_expert else T.Q8_0
    elif name.endswith("attn_v.weight"):
        if mix in ("Q4_K_M", "Q5_K_M") and _more_bits(il, n):
            t = T.Q6_K
        elif mix == "Q4_K_S" and il < 4:
            t = T.Q5_K
        elif mix in ("Q3_K_M", "Q2_K"):
            t = T.Q4_K if mix == "Q3_K_M" and il < 2 else (T.Q3_K if mix == "Q2_K" else default)
        if shape.n_expert == 8 and mix not in ("F16", "BF16"):
            t = T.Q8_0
    elif name.endswith("attn_k.weight") and shape.n_expert == 8 and mix not in ("F16", "BF16"):
        t = T.Q8_0
    elif "ffn_down" in name:
        if mix == "Q2_K":
            t = T.Q3_K
        elif mix == "Q3_K_M":
            t = T.Q5_K if il < n // 16 else T.Q4_K
        elif mix in ("Q4_K_M", "Q5_K_M") and _more_bits(il, n):
            t = T.Q6_K
        elif mix == "Q4_K_S" and il < n // 8:
            t = T.Q5_K
    elif name.endswith("attn_output.weight"):
        if shape.n_expert == 8 and mix in ("Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
            t = T.Q5_K
        elif mix == "Q2_K":
            t = T.Q3_K
        elif mix == "Q3_K_M":
            t = T.Q4_K
    while spec.shape[0] % GGML_QUANT_SIZES[t][0]:
        t = _FALLBACK.get(t, T.F32)
    return t
