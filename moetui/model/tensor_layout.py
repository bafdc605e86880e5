"""The tensors llama.cpp expects for each architecture, with their ggml shapes (ne[0] first), as the
loaders in llama.cpp's src/models/*.cpp create them."""

from __future__ import annotations

from dataclasses import dataclass

from moetui.model.shapes import HYBRID_ARCHITECTURES, Shape


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    kind: str  # "weight" (quantizable matrix), "norm" (ones), "bias" (zeros), "router", "vector"
    layer: int | None = None


def _w(name: str, *shape: int, layer: int | None = None) -> TensorSpec:
    return TensorSpec(name, tuple(shape), "weight", layer)


def _norm(name: str, n: int, layer: int | None = None) -> TensorSpec:
    return TensorSpec(name, (n,), "norm", layer)


def _bias(name: str, *shape: int, layer: int | None = None) -> TensorSpec:
    return TensorSpec(name, tuple(shape), "bias", layer)


def tensor_specs(s: Shape) -> list[TensorSpec]:
    E = s.n_embd
    specs: list[TensorSpec] = [_w("token_embd.weight", E, s.n_vocab)]
    for il in range(s.n_blocks):
        specs += _layer(s, il)
        if il >= s.n_layers:
            specs += _nextn(s, il)
    specs.append(_norm("output_norm.weight", E))
    if not s.tie_embeddings:
        specs.append(_w("output.weight", E, s.n_vocab))
    return specs


def _nextn(s: Shape, il: int) -> list[TensorSpec]:
    """The next-token (MTP) block's own tensors, after an ordinary decoder block."""
    E, p = s.n_embd, f"blk.{il}.nextn."
    return [_w(p + "eh_proj.weight", 2 * E, E, layer=il), _norm(p + "enorm.weight", E, il),
            _norm(p + "hnorm.weight", E, il), _norm(p + "shared_head_norm.weight", E, il)]


def _delta_net(s: Shape, il: int) -> list[TensorSpec]:
    """A Gated DeltaNet (linear attention) layer of qwen3next / qwen35moe (src/models/qwen3next.cpp)."""
    E, p = s.n_embd, f"blk.{il}."
    key_dim, value_dim = s.ssm_state_size * s.ssm_group_count, s.ssm_state_size * s.ssm_dt_rank
    conv_dim = 2 * key_dim + value_dim
    if s.architecture == "qwen3next":
        out = [_w(p + "ssm_in.weight", E, 2 * key_dim + 2 * value_dim, layer=il),
               _w(p + "ssm_ba.weight", E, 2 * s.ssm_dt_rank, layer=il)]
    else:
        out = [_w(p + "attn_qkv.weight", E, conv_dim, layer=il), _w(p + "attn_gate.weight", E, value_dim, layer=il),
               _w(p + "ssm_beta.weight", E, s.ssm_dt_rank, layer=il),
               _w(p + "ssm_alpha.weight", E, s.ssm_dt_rank, layer=il)]
    # conv taps of ones; A = 0 and dt bias 0 keep the state's decay at 1 for the few tokens a proxy decodes
    return out + [TensorSpec(p + "ssm_conv1d.weight", (s.ssm_conv_kernel, conv_dim), "norm", il),
                  _bias(p + "ssm_dt.bias", s.ssm_dt_rank, layer=il), _bias(p + "ssm_a", s.ssm_dt_rank, layer=il),
                  _norm(p + "ssm_norm.weight", s.ssm_state_size, il),
                  _w(p + "ssm_out.weight", value_dim, E, layer=il)]


def _attention(s: Shape, il: int) -> list[TensorSpec]:
    E, p = s.n_embd, f"blk.{il}."
    if s.is_recurrent_layer(il):
        return _delta_net(s, il)
    if s.architecture == "deepseek2":
        k_mla = s.mla_qk_nope + s.rope_dim
        out: list[TensorSpec] = []
        if s.q_lora_rank:
            out += [_w(p + "attn_q_a.weight", E, s.q_lora_rank, layer=il),
                    _norm(p + "attn_q_a_norm.weight", s.q_lora_rank, il),
                    _w(p + "attn_q_b.weight", s.q_lora_rank, s.n_head * k_mla, layer=il)]
        else:
            out.append(_w(p + "attn_q.weight", E, s.n_head * k_mla, layer=il))
        out += [
            _w(p + "attn_kv_a_mqa.weight", E, s.kv_lora_rank + s.rope_dim, layer=il),
            _norm(p + "attn_kv_a_norm.weight", s.kv_lora_rank, il),
            _w(p + "attn_k_b.weight", s.mla_qk_nope, s.kv_lora_rank, s.n_head, layer=il),
            _w(p + "attn_v_b.weight", s.kv_lora_rank, s.mla_v_dim, s.n_head, layer=il),
            _w(p + "attn_output.weight", s.n_head * s.mla_v_dim, E, layer=il),
        ]
        return out
    q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    gated = s.architecture in HYBRID_ARCHITECTURES  # their attention layers project a gate beside Q
    out = [
        _w(p + "attn_q.weight", E, q * (2 if gated else 1), layer=il),
        _w(p + "attn_k.weight", E, kv, layer=il),
        _w(p + "attn_v.weight", E, kv, layer=il),
        _w(p + "attn_output.weight", q, E, layer=il),
    ]
    if s.attn_bias:
        out += [_bias(p + "attn_q.bias", q, layer=il), _bias(p + "attn_k.bias", kv, layer=il),
                _bias(p + "attn_v.bias", kv, layer=il)]
    if s.architecture == "gpt-oss":
        out += [_bias(p + "attn_output.bias", E, layer=il), TensorSpec(p + "attn_sinks.weight", (s.n_head,), "bias", il)]
    if s.qk_norm and s.architecture == "minimax-m2":  # one norm over all heads' Q (and K)
        out += [_norm(p + "attn_q_norm.weight", q, il), _norm(p + "attn_k_norm.weight", kv, il)]
    elif s.qk_norm:
        out += [_norm(p + "attn_q_norm.weight", s.head_dim, il), _norm(p + "attn_k_norm.weight", s.head_dim, il)]
    return out


def _layer(s: Shape, il: int) -> list[TensorSpec]:
    E, p = s.n_embd, f"blk.{il}."
    out = [_norm(p + "attn_norm.weight", E, il)] + _attention(s, il)
    post = ("post_attention_norm.weight" if s.architecture in ("gpt-oss", "glm4moe") + HYBRID_ARCHITECTURES
            else "ffn_norm.weight")
    out.append(_norm(p + post, E, il))
    if not s.is_moe_layer(il):
        F = s.dense_ffn
        return out + [_w(p + "ffn_gate.weight", E, F, layer=il), _w(p + "ffn_up.weight", E, F, layer=il),
                      _w(p + "ffn_down.weight", F, E, layer=il)]
    X, F = s.n_expert, s.expert_ffn
    out.append(TensorSpec(p + "ffn_gate_inp.weight", (E, X), "router", il))
    if s.architecture == "gpt-oss":
        out.append(_bias(p + "ffn_gate_inp.bias", X, layer=il))
    if s.architecture in ("glm4moe", "minimax-m2"):
        out.append(_bias(p + "exp_probs_b.bias", X, layer=il))
    out += [
        _w(p + "ffn_gate_exps.weight", E, F, X, layer=il),
        _w(p + "ffn_up_exps.weight", E, F, X, layer=il),
        _w(p + "ffn_down_exps.weight", F, E, X, layer=il),
    ]
    if s.architecture == "gpt-oss":
        out += [_bias(p + "ffn_gate_exps.bias", F, X, layer=il), _bias(p + "ffn_up_exps.bias", F, X, layer=il),
                _bias(p + "ffn_down_exps.bias", E, X, layer=il)]
    if s.n_expert_shared or s.shared_ffn:
        SF = s.shared_ffn or s.expert_ffn * max(s.n_expert_shared, 1)
        if s.architecture in ("qwen2moe",) + HYBRID_ARCHITECTURES:
            out.append(TensorSpec(p + "ffn_gate_inp_shexp.weight", (E,), "router", il))
        out += [_w(p + "ffn_gate_shexp.weight", E, SF, layer=il), _w(p + "ffn_up_shexp.weight", E, SF, layer=il),
                _w(p + "ffn_down_shexp.weight", SF, E, layer=il)]
    return out
