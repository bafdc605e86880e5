"""Synthetic GGUF models ("proxies") with a real model's exact architecture, tensor shapes and quant mix,
filled with random but valid weights. llama.cpp runs them at the real model's speed."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gguf import GGMLQuantizationType as T

from moetui.model.gguf_writer import PlannedTensor, const_writer, header_bytes, repeat_writer, write_gguf
from moetui.model.quant_mix import MIXES, quant_type
from moetui.model.random_blocks import pattern
from moetui.model.shapes import HYBRID_ARCHITECTURES, Shape
from moetui.model.tensor_layout import TensorSpec, tensor_specs
from moetui.model.vocab import make_vocab

_ONES_F32 = struct.pack("<f", 1.0)
_ZERO_F32 = struct.pack("<f", 0.0)


@dataclass
class ProxyResult:
    path: Path
    bytes_written: int
    seconds: float
    n_tensors: int

    @property
    def gb_per_s(self) -> float:
        return self.bytes_written / 1e9 / max(self.seconds, 1e-9)


def metadata_for(shape: Shape, mix: str, vocab_variant: int = 0) -> dict[str, Any]:
    a = shape.architecture
    md: dict[str, Any] = {
        "general.architecture": a,
        "general.name": f"{shape.name} moetui proxy",
        "general.file_type": MIXES[mix][1],
        "general.quantization_version": 2,
        f"{a}.block_count": shape.n_blocks,
        f"{a}.context_length": shape.context_length,
        f"{a}.embedding_length": shape.n_embd,
        f"{a}.feed_forward_length": shape.dense_ffn or shape.expert_ffn,
        f"{a}.attention.head_count": shape.n_head,
        f"{a}.attention.head_count_kv": shape.n_head_kv,
        f"{a}.attention.layer_norm_rms_epsilon": shape.rms_eps,
        f"{a}.rope.freq_base": shape.rope_theta,
        f"{a}.attention.key_length": shape.head_dim,
        f"{a}.attention.value_length": shape.head_dim,
        f"{a}.rope.dimension_count": shape.head_dim // 2 if a == "glm4moe" else shape.head_dim,
    }
    if shape.is_moe:
        md[f"{a}.expert_count"] = shape.n_expert
        md[f"{a}.expert_used_count"] = shape.n_expert_used
        md[f"{a}.expert_feed_forward_length"] = shape.expert_ffn
    if shape.n_expert_shared and a not in ("llama4", "qwen2moe") + HYBRID_ARCHITECTURES:
        # like the published GGUFs: these converters write no shared-expert count (the tensors say it)
        md[f"{a}.expert_shared_count"] = shape.n_expert_shared
    if shape.shared_ffn:
        md[f"{a}.expert_shared_feed_forward_length"] = shape.shared_ffn
    if shape.leading_dense_layers:
        md[f"{a}.leading_dense_block_count"] = shape.leading_dense_layers
    if a == "llama4":
        md[f"{a}.interleave_moe_layer_step"] = max(shape.moe_layer_step, 1)
    if a == "gpt-oss":
        md[f"{a}.attention.sliding_window"] = shape.sliding_window or 128
    if a in ("deepseek2", "glm4moe"):
        md[f"{a}.expert_weights_scale"] = 1.0
        md[f"{a}.expert_weights_norm"] = a == "glm4moe"
        md[f"{a}.expert_gating_func"] = 2 if a == "glm4moe" else 1
    if a == "glm4moe" or shape.nextn_layers:
        md[f"{a}.nextn_predict_layers"] = shape.nextn_layers
    if a in HYBRID_ARCHITECTURES:
        md.update({
            f"{a}.full_attention_interval": shape.full_attention_interval,
            f"{a}.ssm.conv_kernel": shape.ssm_conv_kernel,
            f"{a}.ssm.state_size": shape.ssm_state_size,
            f"{a}.ssm.group_count": shape.ssm_group_count,
            f"{a}.ssm.time_step_rank": shape.ssm_dt_rank,
            f"{a}.ssm.inner_size": shape.ssm_state_size * shape.ssm_dt_rank,
            f"{a}.rope.dimension_count": shape.rope_dim_count or shape.head_dim,
        })
        if a == "qwen35moe":  # M-RoPE sections (text-only: all in the first)
            md[f"{a}.rope.dimension_sections"] = [(shape.rope_dim_count or shape.head_dim) // 2, 0, 0, 0]
    if a == "minimax-m2":
        md[f"{a}.expert_gating_func"] = 2
        md[f"{a}.rope.dimension_count"] = shape.rope_dim_count or shape.head_dim
    if a == "deepseek2":
        k_mla = shape.mla_qk_nope + shape.rope_dim
        md.update({
            f"{a}.attention.head_count_kv": 1,
            f"{a}.attention.key_length": shape.kv_lora_rank + shape.rope_dim,
            f"{a}.attention.value_length": shape.kv_lora_rank,
            f"{a}.attention.key_length_mla": k_mla,
            f"{a}.attention.value_length_mla": shape.mla_v_dim,
            f"{a}.attention.kv_lora_rank": shape.kv_lora_rank,
            f"{a}.rope.dimension_count": shape.rope_dim,
        })
        if shape.q_lora_rank:
            md[f"{a}.attention.q_lora_rank"] = shape.q_lora_rank
    md.update(make_vocab(shape.n_vocab, vocab_variant))
    return md


def _writer_for(spec: TensorSpec, qtype: T, seed: int) -> Callable:
    if spec.kind == "norm":
        return const_writer(_ONES_F32)
    if spec.kind == "bias":
        return const_writer(_ZERO_F32)
    return repeat_writer(pattern(qtype, seed))


def plan_tensors(shape: Shape, mix: str, seed: int = 0) -> list[PlannedTensor]:
    planned = []
    for spec in tensor_specs(shape):
        qtype = quant_type(spec, shape, mix)
        planned.append(PlannedTensor(spec.name, spec.shape, qtype, _writer_for(spec, qtype, seed)))
    return planned


def write_proxy(shape: Shape, path: str | Path, mix: str = "Q4_K_M", seed: int = 0,
                progress: Callable[[int, int], None] | None = None, vocab_variant: int = 0) -> ProxyResult:
    """vocab_variant: 0 is the shared vocabulary; others are the same size with other token texts
    (see make_vocab), for a draft that must be refused."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = plan_tensors(shape, mix, seed)
    t0 = time.perf_counter()
    n = write_gguf(path, metadata_for(shape, mix, vocab_variant), tensors, progress)
    return ProxyResult(path, n, time.perf_counter() - t0, len(tensors))


def predicted_size(shape: Shape, mix: str) -> int:
    tensors = plan_tensors(shape, mix)
    head, _ = header_bytes(metadata_for(shape, mix), tensors)
    return len(head) + sum(-(-t.nbytes // 32) * 32 for t in tensors)
