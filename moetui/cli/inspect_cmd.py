"""`moetui inspect PATH`: the MoE structure of a GGUF, read from its header only."""

from __future__ import annotations

import argparse

from moetui.cli.output import human_bytes, print_json, printable, table
from moetui.model.info import ModelInfo


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a GGUF file (any part of a split GGUF), or REPO:QUANT on the hub")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tensors", action="store_true", help="list every tensor (with --json: include them)")


def load_info(ref: str) -> ModelInfo:
    # numpy: loaded when this runs, not at start-up
    from moetui.hub.resolve import resolve_model

    return resolve_model(ref)


def render(info: ModelInfo, with_tensors: bool = False) -> str:
    lines = [f"{info.name}  ({info.architecture}, {info.file_type}, {info.n_params / 1e9:.2f} B params, "
             f"{human_bytes(info.total_bytes)} of weights in {len(info.files)} file(s))"]
    shape = [
        ("layers", info.n_layers),
        ("embedding width", info.n_embd),
        ("heads / KV heads", f"{info.n_head} / {max(info.n_head_kv) if info.n_head_kv else '?'}"),
        ("head dim K / V", f"{info.head_dim_k} / {info.head_dim_v}"),
        ("native context", f"{info.context_length:,}"),
        ("vocabulary", f"{info.n_vocab:,}"),
    ]
    if info.is_mla:
        shape.append(("MLA latent (kv_lora / q_lora)", f"{info.kv_lora_rank} / {info.q_lora_rank or '-'}"))
        shape.append(("MLA head dim K / V", f"{info.mla_head_dim_k} / {info.mla_head_dim_v}"))
    if info.is_hybrid:
        shape.append(("attention / recurrent layers", f"{len(info.attention_layers)} / {len(info.recurrent_layers)}"))
    if info.nextn_layers:
        shape.append(("next-token (MTP) blocks", f"{info.nextn_layers} (not loaded: {human_bytes(info.unused_bytes)})"))
    if info.swa_layers:
        shape.append(("sliding-window layers", f"{len(info.swa_layers)} (window {info.sliding_window})"))
    if info.is_moe:
        shape += [
            ("experts (used per token)", f"{info.n_expert} ({info.n_expert_used})"),
            ("shared experts", info.n_expert_shared),
            ("expert FFN width", info.expert_ffn),
            ("leading dense layers", info.leading_dense_layers),
            ("MoE layers", sum(1 for layer in info.layers if layer.is_moe)),
        ]
    else:
        shape.append(("MoE", "no: a dense model"))
    lines += ["", table(shape)]
    roles = [(role, human_bytes(b), f"{100 * b / max(info.total_bytes, 1):.1f}%")
             for role, b in info.bytes_by_role.items() if b]
    lines += ["", table(roles, ["bytes by role", "size", "share"])]
    if info.expert_bytes_by_part:
        parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in sorted(info.expert_bytes_by_part.items()))
        moe_layers = [layer for layer in info.layers if layer.is_moe]
        per_layer = f"; per MoE layer {human_bytes(moe_layers[0].expert_total)}" if moe_layers else ""
        lines.append(f"routed experts by part: {parts}{per_layer}")
    lines += [
        "",
        f"active bytes per token: {human_bytes(info.active_bytes_per_token)}",
        "KV cache per token: " + ", ".join(f"{t} {human_bytes(info.kv_bytes_per_token(t))}"
                                            for t in ("f16", "q8_0", "q4_0"))
        + (f" (attention layers only); recurrent state {human_bytes(info.recurrent_state_bytes(1))} per sequence"
           if info.is_hybrid else ""),
        "tensor types: " + ", ".join(f"{k} x{v}" for k, v in sorted(info.tensor_types.items())),
    ]
    lines += [f"note: {n}" for n in info.notes]
    if with_tensors:
        lines += ["", table([(printable(t.name), t.role.value, "x".join(map(str, t.shape)), t.type, human_bytes(t.nbytes))
                             for t in info.tensors], ["tensor", "role", "shape", "type", "size"])]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = load_info(args.model)
    if args.json:
        print_json(info.to_dict(with_tensors=args.tensors))
    else:
        print(render(info, args.tensors))
    return 0
