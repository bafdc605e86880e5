"""ModelInfo: the exact picture of a GGUF model that sizing, runtime and the UI work from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from moetui.config import CACHE_TYPES
from moetui.errors import ConfigError
from moetui.model.roles import Role

# Bytes per element of a KV-cache type, as llama.cpp stores it (quant blocks of 32 for q8_0/q4_0...).
KV_CACHE_TYPES = CACHE_TYPES  # the one list (moetui.config), under the name the sizing core reads


def kv_bytes_per_element(cache_type: str) -> float:
    try:
        qt = GGMLQuantizationType[cache_type.upper()]
    except KeyError:
        raise ConfigError(f"unknown KV cache type {cache_type!r}; one of {', '.join(KV_CACHE_TYPES)}",
                          field="cache_type") from None
    block, size = GGML_QUANT_SIZES[qt]
    return size / block


@dataclass
class TensorRecord:
    name: str
    role: Role
    layer: int | None
    shape: tuple[int, ...]
    type: str
    nbytes: int
    expert_part: str | None = None  # up / gate / down / gate_up for routed experts


@dataclass
class LayerInfo:
    index: int
    is_moe: bool
    is_swa: bool
    expert_bytes: dict[str, int] = field(default_factory=dict)  # part -> bytes (routed experts only)
    other_bytes: int = 0  # every non-expert tensor of the layer

    @property
    def expert_total(self) -> int:
        return sum(self.expert_bytes.values())


@dataclass
class ModelInfo:
    path: str
    files: list[str]
    architecture: str
    name: str
    file_type: str  # e.g. "Q4_K - Medium"-like label from the dominant tensor type
    is_moe: bool
    n_layers: int
    n_embd: int
    n_vocab: int
    context_length: int
    n_head: int
    n_head_kv: list[int]
    head_dim_k: int
    head_dim_v: int
    n_expert: int = 0
    n_expert_used: int = 0
    n_expert_shared: int = 0
    expert_ffn: int = 0
    dense_ffn: int = 0
    leading_dense_layers: int = 0
    moe_layer_step: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    mla_head_dim_k: int = 0
    mla_head_dim_v: int = 0
    sliding_window: int = 0
    swa_layers: list[int] = field(default_factory=list)
    # Hybrid models (qwen35moe, qwen3next, ...): layers whose memory is a recurrent state (llama.cpp's RS
    # buffer, f32, per sequence) instead of a KV cache, and that state's elements per layer and sequence.
    recurrent_layers: list[int] = field(default_factory=list)
    recurrent_state_per_layer: int = 0  # n_embd_r + n_embd_s
    # Next-token (MTP/nextn) blocks llama.cpp does not load for generation: not layers, not in any buffer.
    nextn_layers: int = 0
    unused_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # plain remarks for the user (unknown architecture, ...)
    # (file name, header bytes, file size) per file of a model that is not on this disk (hub, shape preset):
    # enough for llama.cpp's dry run over a sparse copy (moetui.model.virtual.write_sparse_parts)
    header_parts: list[tuple[str, bytes, int]] = field(default_factory=list, repr=False)
    tensor_types: dict[str, int] = field(default_factory=dict)  # type -> tensor count
    bytes_by_role: dict[str, int] = field(default_factory=dict)
    expert_bytes_by_part: dict[str, int] = field(default_factory=dict)
    layers: list[LayerInfo] = field(default_factory=list)
    tensors: list[TensorRecord] = field(default_factory=list)
    total_bytes: int = 0
    file_bytes: int = 0
    n_params: int = 0
    identity: str = ""  # sha256 of the header(s): same model, same id

    # --- derived figures -----------------------------------------------------------------------
    @property
    def is_mla(self) -> bool:
        return self.mla_head_dim_k > 0

    @property
    def routed_expert_bytes(self) -> int:
        return self.bytes_by_role.get(Role.EXPERTS.value, 0)

    @property
    def dense_bytes(self) -> int:
        """Everything that is not a routed expert."""
        return self.total_bytes - self.routed_expert_bytes

    @property
    def ties_embeddings(self) -> bool:
        return self.bytes_by_role.get(Role.OUTPUT.value, 0) == 0

    @property
    def active_bytes_per_token(self) -> int:
        """Bytes read to produce one token: every dense tensor, n_used/n_expert of the routed experts.
        The token embedding is a row lookup, so only one row counts, unless it doubles as the output head."""
        embd = self.bytes_by_role.get(Role.EMBEDDING.value, 0)
        embd_read = embd if self.ties_embeddings else (embd // max(self.n_vocab, 1))
        routed = self.routed_expert_bytes
        frac = self.n_expert_used / self.n_expert if self.n_expert else 0.0
        return int(self.dense_bytes - embd + embd_read + routed * frac)

    @property
    def is_hybrid(self) -> bool:
        return bool(self.recurrent_layers)

    @property
    def attention_layers(self) -> list[int]:
        """Layers with a KV cache (every layer but the recurrent ones)."""
        recurrent = set(self.recurrent_layers)
        return [il for il in range(self.n_layers) if il not in recurrent]

    def recurrent_state_bytes(self, n_seq: int = 1, layers: list[int] | None = None) -> int:
        """llama.cpp's RS buffer: f32 conv + SSM state per recurrent layer and sequence, whatever the context."""
        idx = self.recurrent_layers if layers is None else [il for il in layers if il in set(self.recurrent_layers)]
        return 4 * self.recurrent_state_per_layer * max(n_seq, 1) * len(idx)

    def kv_elements_per_token(self, layer: int) -> tuple[int, int]:
        """(K, V) elements cached per token in one layer, as llama.cpp sizes its cache (none for a
        recurrent layer)."""
        if layer in self.recurrent_layers:
            return 0, 0
        nkv = self.n_head_kv[layer] if layer < len(self.n_head_kv) else self.n_head_kv[-1]
        if self.is_mla:
            # MLA GGUFs store key_length = latent + rope dims with one KV head; llama.cpp caches that as K
            # and keeps no separate V cache.
            return nkv * self.head_dim_k, 0
        return nkv * self.head_dim_k, nkv * self.head_dim_v

    def kv_bytes_per_token(self, cache_type_k: str = "f16", cache_type_v: str | None = None) -> float:
        """KV-cache bytes per token of context over all full-attention layers (SWA layers hold a fixed window)."""
        cache_type_v = cache_type_v or cache_type_k
        bk, bv = kv_bytes_per_element(cache_type_k), kv_bytes_per_element(cache_type_v)
        total = 0.0
        for il in range(self.n_layers):
            if il in self.swa_layers:
                continue
            k, v = self.kv_elements_per_token(il)
            total += k * bk + v * bv
        return total

    def to_dict(self, with_tensors: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d.pop("header_parts")
        if not with_tensors:
            d.pop("tensors")
        d["routed_expert_bytes"] = self.routed_expert_bytes
        d["dense_bytes"] = self.dense_bytes
        d["active_bytes_per_token"] = self.active_bytes_per_token
        d["kv_bytes_per_token"] = {t: self.kv_bytes_per_token(t) for t in ("f16", "q8_0", "q4_0")}
        d["is_mla"] = self.is_mla
        d["attention_layers"] = len(self.attention_layers)
        d["recurrent_state_bytes_per_sequence"] = self.recurrent_state_bytes(1)
        return d
