"""Random but valid quantized data for synthetic models.

llama.cpp's speed does not depend on weight values, but the values must be finite and modest so that
activations stay finite through many layers. Each type gets a pattern buffer of random blocks whose scale
fields are overwritten with small finite values; tensors are written by repeating that buffer, so a 20 GB
proxy streams at disk speed without ever being held in memory.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

PATTERN_BYTES = 8 << 20

# type -> list of (byte offset of an f16 scale inside the block, value). Values are chosen so that a
# dequantized weight is of order 0.01-0.05, like a trained model's.
_F16_SCALES: dict[T, list[tuple[int, float]]] = {
    T.Q4_0: [(0, 0.004)],
    T.Q4_1: [(0, 0.003), (2, -0.02)],
    T.Q5_0: [(0, 0.002)],
    T.Q5_1: [(0, 0.0015), (2, -0.02)],
    T.Q8_0: [(0, 0.0003)],
    T.Q2_K: [(80, 0.002), (82, 0.001)],
    T.Q3_K: [(108, 0.0003)],
    T.Q4_K: [(0, 0.0002), (2, 0.0001)],
    T.Q5_K: [(0, 0.0001), (2, 0.00005)],
    T.Q6_K: [(208, 0.00003)],
    T.IQ4_NL: [(0, 0.0003)],
    T.IQ4_XS: [(0, 0.00002)],
}


@lru_cache(maxsize=None)
def pattern(qtype: T, seed: int = 0) -> bytes:
    """PATTERN_BYTES (rounded to whole blocks) of valid random data of this type."""
    rng = np.random.default_rng(1234 + int(qtype) + seed)
    block, size = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        return rng.normal(0, 0.02, PATTERN_BYTES // 4).astype(np.float32).tobytes()
    if qtype == T.F16:
        return rng.normal(0, 0.02, PATTERN_BYTES // 2).astype(np.float16).tobytes()
    if qtype == T.BF16:
        f = rng.normal(0, 0.02, PATTERN_BYTES // 2).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    n_blocks = max(1, PATTERN_BYTES // size)
    data = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    if qtype == T.MXFP4:
        data[:, 0] = 119  # E8M0 exponent: 2^-8 per unit, fp4 values up to 6
    elif qtype in _F16_SCALES:
        for off, value in _F16_SCALES[qtype]:
            jitter = rng.uniform(0.5, 1.5, n_blocks).astype(np.float32) * value
            data[:, off : off + 2] = jitter.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    else:
        raise ValueError(f"no random-block recipe for {qtype.name}")
    return data.tobytes()


def supported(qtype: T) -> bool:
    return qtype in (T.F32, T.F16, T.BF16, T.MXFP4) or qtype in _F16_SCALES
