"""What each GGUF tensor is for, from its name. The sizing core places tensors by role, so this is the
one place that knows llama.cpp's tensor naming."""

from __future__ import annotations

import re
from enum import Enum


class Role(str, Enum):
    EMBEDDING = "token_embedding"
    OUTPUT = "output_head"
    ATTENTION = "attention"
    DENSE_FFN = "dense_ffn"
    ROUTER = "router"
    EXPERTS = "routed_experts"
    SHARED_EXPERTS = "shared_experts"
    NORM = "norms"
    OTHER = "other"


_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")
# llama.cpp's own expert regex is "\.ffn_(up|down|gate|gate_up)_(ch|)exps"; biases of experts (gpt-oss)
# live with their weights, so they move with them.
_EXPERT = re.compile(r"^ffn_(up|down|gate|gate_up)_(ch|)exps\.")
_SHARED = re.compile(r"^ffn_(up|down|gate|gate_inp)_shexp\.")
_DENSE = re.compile(r"^ffn_(up|down|gate|gate_up)\.")
_ROUTER = re.compile(r"^(ffn_gate_inp\.|exp_probs_b)")


def block_index(name: str) -> int | None:
    m = _BLOCK.match(name)
    return int(m.group(1)) if m else None


def expert_part(name: str) -> str | None:
    """'up', 'gate', 'down' or 'gate_up' for a routed-expert tensor, else None."""
    m = _BLOCK.match(name)
    if not m:
        return None
    e = _EXPERT.match(m.group(2))
    return e.group(1) if e else None


def classify(name: str) -> Role:
    if name.startswith("token_embd."):
        return Role.EMBEDDING
    if name.startswith("output."):
        return Role.OUTPUT
    if name.endswith("norm.weight") or name.endswith("norm.bias") or name.endswith("_norm.weight"):
        return Role.NORM
    m = _BLOCK.match(name)
    if not m:
        return Role.OTHER
    rest = m.group(2)
    if _EXPERT.match(rest):
        return Role.EXPERTS
    if _SHARED.match(rest):
        return Role.SHARED_EXPERTS
    if _ROUTER.match(rest):
        return Role.ROUTER
    if _DENSE.match(rest):
        return Role.DENSE_FFN
    if rest.startswith("attn_"):
        return Role.ATTENTION
    if "norm" in rest:
        return Role.NORM
    return Role.OTHER
