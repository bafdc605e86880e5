"""Model shapes: the hyperparameters a proxy is built from, loaded from presets/shapes/*.toml, copied from
an existing GGUF (`--like`), and scaled down (`tiny`, `small`) while keeping the same structure."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moetui.errors import ConfigError
from moetui.model.info import ModelInfo
from moetui.paths import presets_dir

ARCHITECTURES = ("qwen3moe", "qwen2moe", "llama", "llama4", "gpt-oss", "deepseek2", "glm4moe", "qwen3",
                 "qwen3next", "qwen35moe", "minimax-m2")
HYBRID_ARCHITECTURES = ("qwen3next", "qwen35moe")  # Gated DeltaNet layers between attention layers


@dataclass
class Shape:
    name: str
    architecture: str
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    context_length: int
    dense_ffn: int = 0  # FFN width of dense layers (leading dense / interleaved / dense models)
    n_expert: int = 0
    n_expert_used: int = 0
    expert_ffn: int = 0
    n_expert_shared: int = 0
    shared_ffn: int = 0  # width of the shared expert FFN (0: n_expert_shared * expert_ffn)
    leading_dense_layers: int = 0
    moe_layer_step: int = 0  # llama4: every Nth layer is MoE (1 = all)
    tie_embeddings: bool = False
    qk_norm: bool = False
    attn_bias: bool = False
    sliding_window: int = 0
    # deepseek2 MLA
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    rope_dim: int = 0
    mla_qk_nope: int = 0
    mla_v_dim: int = 0
    # hybrid (qwen3next, qwen35moe): Gated DeltaNet layers, every full_attention_interval-th layer attends
    full_attention_interval: int = 0
    ssm_conv_kernel: int = 0
    ssm_state_size: int = 0  # head dim of the delta-rule state (K and V)
    ssm_group_count: int = 0  # K heads
    ssm_dt_rank: int = 0  # V heads
    rope_dim_count: int = 0  # partial rotary (0: the head dim)
    nextn_layers: int = 0  # next-token (MTP) blocks written after the trunk (llama.cpp skips them)
    rope_theta: float = 1_000_000.0
    rms_eps: float = 1e-6
    hf_repo: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"shape {self.name}: architecture {self.architecture!r} cannot be proxied "
                              f"(one of {', '.join(ARCHITECTURES)})")

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def n_blocks(self) -> int:
        """Blocks in the file: the layers and the next-token blocks after them."""
        return self.n_layers + self.nextn_layers

    def is_recurrent_layer(self, il: int) -> bool:
        return (self.architecture in HYBRID_ARCHITECTURES and il < self.n_layers
                and (il + 1) % max(self.full_attention_interval, 1) != 0)

    def is_moe_layer(self, il: int) -> bool:
        if not self.is_moe or il < self.leading_dense_layers:
            return False
        if self.moe_layer_step > 1:
            return (il + 1) % self.moe_layer_step == 0
        return True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _shape_files() -> dict[str, Path]:
    folder = presets_dir() / "shapes"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def list_shapes() -> list[str]:
    return list(_shape_files())


def load_shape(name: str) -> Shape:
    files = _shape_files()
    key = next((k for k in files if k.lower() == name.lower()), None)
    if key is None:
        raise ConfigError(f"unknown shape {name!r}; presets: {', '.join(files)}")
    data = tomllib.loads(files[key].read_text())
    try:
        return Shape(**data)
    except TypeError as exc:
        raise ConfigError(f"{files[key]}: {exc}") from exc


def shape_from_info(info: ModelInfo) -> Shape:
    """The shape of an existing (local or remote) GGUF, for a try-before-download proxy."""
    arch = info.architecture
    if arch == "llama" and info.is_moe:
        arch = "llama"
    shared_ffn = 0
    for t in info.tensors:
        if t.name.endswith("ffn_up_shexp.weight") and len(t.shape) >= 2:
            shared_ffn = int(t.shape[1])
            break
    rope_dim = 0
    if info.is_mla:
        rope_dim = info.head_dim_k - info.kv_lora_rank
    has_qk_norm = any(t.name.endswith("attn_q_norm.weight") for t in info.tensors)
    has_bias = any(t.name.endswith("attn_q.bias") for t in info.tensors)
    return Shape(
        name=info.name, architecture=arch, n_layers=info.n_layers, n_embd=info.n_embd, n_head=info.n_head,
        n_head_kv=max(info.n_head_kv) if info.n_head_kv else info.n_head,
        head_dim=info.mla_head_dim_v if info.is_mla else info.head_dim_k,
        n_vocab=info.n_vocab, context_length=info.context_length, dense_ffn=info.dense_ffn,
        n_expert=info.n_expert, n_expert_used=info.n_expert_used, expert_ffn=info.expert_ffn,
        n_expert_shared=info.n_expert_shared or (1 if shared_ffn else 0), shared_ffn=shared_ffn,
        leading_dense_layers=info.leading_dense_layers, moe_layer_step=info.moe_layer_step,
        tie_embeddings=info.ties_embeddings, qk_norm=has_qk_norm, attn_bias=has_bias,
        sliding_window=info.sliding_window if arch == "gpt-oss" else 0,
        q_lora_rank=info.q_lora_rank, kv_lora_rank=info.kv_lora_rank, rope_dim=rope_dim,
        nextn_layers=info.nextn_layers, **_hybrid_fields(info),
        mla_qk_nope=(info.mla_head_dim_k - rope_dim) if info.is_mla else 0, mla_v_dim=info.mla_head_dim_v,
    )


def _hybrid_fields(info: ModelInfo) -> dict[str, Any]:
    """The Gated DeltaNet hyperparameters of a hybrid model, read back from its tensors."""
    if info.architecture not in HYBRID_ARCHITECTURES or not info.recurrent_layers:
        return {}
    attn = info.attention_layers
    interval = attn[0] + 1 if attn else info.n_layers + 1
    by_name = {t.name: t for t in info.tensors}
    il = info.recurrent_layers[0]
    n_v_heads = by_name.get(f"blk.{il}.ssm_a")
    conv = by_name.get(f"blk.{il}.ssm_conv1d.weight")
    norm = by_name.get(f"blk.{il}.ssm_norm.weight")
    if not (n_v_heads and conv and norm):
        return {}
    d_state, v_heads = int(norm.shape[0]), int(n_v_heads.shape[0])
    k_heads = (int(conv.shape[1]) - d_state * v_heads) // (2 * d_state)
    return dict(full_attention_interval=interval, ssm_conv_kernel=int(conv.shape[0]), ssm_state_size=d_state,
                ssm_group_count=k_heads, ssm_dt_rank=v_heads)


def scaled(shape: Shape, scale: str) -> Shape:
    """Same structure, fewer/narrower everything. 'tiny' loads in a blink (tests); 'small' is ~1 GB."""
    if scale == "full":
        return shape
    if scale not in ("tiny", "small"):
        raise ConfigError(f"unknown scale {scale!r} (full, small, tiny)")
    tiny = scale == "tiny"
    ratio_kv = max(1, shape.n_head // max(shape.n_head_kv, 1))
    n_head = 4 if tiny else max(8, shape.n_head // 2)
    head_dim = 64 if tiny else min(shape.head_dim, 128)
    n_embd = 256 if tiny else max(1024, (shape.n_embd // 2) // 256 * 256)
    n_expert = min(shape.n_expert, 8 if tiny else 64)
    lead = min(shape.leading_dense_layers, 1)
    step = shape.moe_layer_step
    n_layers = (4 if tiny else 16) + lead
    if step > 1:
        n_layers = max(n_layers, 2 * step)
    if shape.sliding_window:
        n_layers += n_layers % 2
    if shape.full_attention_interval:
        n_layers = max(n_layers, shape.full_attention_interval)
    s = dataclasses.replace(
        shape,
        name=f"{shape.name} ({scale})",
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=max(1, n_head // ratio_kv),
        head_dim=head_dim,
        n_vocab=2048 if tiny else 32768,
        dense_ffn=(512 if tiny else 4096) if shape.dense_ffn else 0,
        n_expert=n_expert,
        n_expert_used=min(shape.n_expert_used, max(1, n_expert // 4)) if tiny else min(shape.n_expert_used, n_expert),
        expert_ffn=(256 if tiny else 512) if shape.expert_ffn else 0,
        shared_ffn=(256 if tiny else 512) if shape.shared_ffn else 0,
        leading_dense_layers=lead,
        sliding_window=min(shape.sliding_window, 128) if shape.sliding_window else 0,
        # llama.cpp recognises DeepSeek-V2-Lite (no q LoRA) by its 26/27 layers; a shorter cut must use q LoRA
        q_lora_rank=(128 if tiny else 512) if (shape.q_lora_rank or shape.architecture == "deepseek2") else 0,
        kv_lora_rank=(128 if tiny else 256) if shape.kv_lora_rank else 0,
        rope_dim=32 if shape.rope_dim else 0,
        mla_qk_nope=64 if shape.mla_qk_nope else 0,
        mla_v_dim=64 if shape.mla_v_dim else 0,
        ssm_state_size=min(shape.ssm_state_size, 64 if tiny else 128),
        ssm_group_count=min(shape.ssm_group_count, 2 if tiny else 8),
        ssm_dt_rank=min(shape.ssm_dt_rank, 4 if tiny else 16),
        rope_dim_count=min(shape.rope_dim_count, 32) if shape.rope_dim_count else 0,
        nextn_layers=min(shape.nextn_layers, 1),
    )
    return s
