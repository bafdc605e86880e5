"""Checked reads of GGUF metadata values: the byte reader below guarantees well-formed values, but not
sensible ones. A hostile or corrupt header can hold a string, NaN, a list or a negative number where a
count belongs, or claim millions of layers in a 5 MB file; every count moetui derives sizes from comes
through here and is an int in its range, or the read fails with a one-line ModelFileError.

The bounds are far above any real model (the largest have ~160 layers, 512 experts, 16K embeddings) and
keep every later product of them (KV bytes, plan arithmetic) finite and cheap.
"""

from __future__ import annotations

from typing import Any

from moetui.errors import ModelFileError

MAX_LAYERS = 4096
MAX_DIM = 1 << 20  # widths, heads, head dims, FFN sizes, LoRA ranks
MAX_EXPERTS = 1 << 16
MAX_CONTEXT = (1 << 32) - 1  # llama.cpp keeps n_ctx_train in a uint32
MAX_VOCAB = 1 << 31


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class HeaderValues:
    """Typed, bounded access to `{arch}.*` keys of one model's merged metadata."""

    def __init__(self, metadata: dict[str, Any], arch: str, path: str) -> None:
        self.md, self.arch, self.path = metadata, arch, path

    def _key(self, key: str) -> str:
        return key if key.startswith("general.") else f"{self.arch}.{key}"

    def _bad(self, key: str, value: Any, want: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: corrupt header ({self._key(key)} is {_describe(value)}, expected {want})")

    def _check_int(self, key: str, value: Any, hi: int) -> int:
        # bool is an int in Python but never a count in GGUF; floats (NaN, inf, 2.5) are not counts either
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, value, f"an integer 0..{hi:,}")
        if not 0 <= value <= hi:
            raise self._bad(key, value, f"0..{hi:,}")
        return value

    def has(self, key: str) -> bool:
        return self._key(key) in self.md

    def required(self, key: str, hi: int) -> int:
        if not self.has(key):
            raise ModelFileError(f"{self.path}: corrupt header (no {self._key(key)})")
        return self._check_int(key, self.md[self._key(key)], hi)

    def count(self, key: str, default: int, hi: int) -> int:
        """A scalar count; a per-layer array gives its largest entry."""
        value = self.md.get(self._key(key), default)
        if isinstance(value, list):
            return max(self.per_layer(key, default, len(value), hi), default=default)
        return self._check_int(key, value, hi)

    def per_layer(self, key: str, default: int, n_layers: int, hi: int) -> list[int]:
        """One value per layer: a scalar repeated, or an array of exactly n_layers entries (as llama.cpp
        demands)."""
        value = self.md.get(self._key(key), default)
        if not isinstance(value, list):
            return [self._check_int(key, value, hi)] * n_layers
        if len(value) != n_layers or not value:
            raise ModelFileError(f"{self.path}: corrupt header ({self._key(key)} has {len(value)} entries "
                                 f"for {n_layers} layers)")
        return [self._check_int(key, v, hi) for v in value]

    def refuse_zero(self, *keys: str) -> None:
        """Keys that, present and 0 (every entry 0, for a per-layer array), describe no model: no KV heads,
        no experts picked per token, no embedding width, no context. Refused with the key named."""
        for key in keys:
            value = self.md.get(self._key(key))
            entries = value if isinstance(value, list) else [value]
            if self.has(key) and entries and all(isinstance(e, int) and not isinstance(e, bool) and e == 0
                                                 for e in entries):
                raise ModelFileError(f"{self.path}: the header describes no model ({self._key(key)} is 0)")
