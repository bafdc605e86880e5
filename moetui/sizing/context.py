"""Context length and KV-cache type: the largest context that fits (up to the target), and whether a
q8_0 cache buys the context asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Below this a chat model is of little use; the planner never shrinks the context further on its own.
MIN_USEFUL_CTX = 2048
# With no --ctx: aim for this much (or the native context if smaller). Context beyond it costs GPU
# memory that experts would otherwise use; ask for more with --ctx.
DEFAULT_TARGET_CTX = 32768
CTX_STEP = 256  # llama.cpp pads the KV cache to 256 cells


@dataclass
class ContextChoice:
    n_ctx: int
    cache_type: str  # K and V
    flash_attn_required: bool
    reason: list[str]


def largest_fitting(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """Largest multiple of CTX_STEP in [lo, hi] with ok(ctx) (monotone: more context never fits better)."""
    lo = max(CTX_STEP, lo // CTX_STEP * CTX_STEP)
    hi = hi // CTX_STEP * CTX_STEP
    if hi < lo or not ok(lo):
        return None
    if ok(hi):
        return hi
    a, b = lo // CTX_STEP, hi // CTX_STEP  # ok(a), not ok(b)
    while b - a > 1:
        mid = (a + b) // 2
        if ok(mid * CTX_STEP):
            a = mid
        else:
            b = mid
    return a * CTX_STEP


def choose_context(target: int, explicit: bool, native: int, forced_kv: str | None,
                   good: Callable[[int, str], bool], feasible: Callable[[int, str], bool],
                   on_gpu: bool = True) -> ContextChoice | None:
    """good(ctx, kv): the non-expert weights and KV stay on the GPU (or, CPU-only, it fits RAM);
    feasible(ctx, kv): it runs at all (partial layer offload allowed). None if nothing fits.
    on_gpu: whether the plan has a GPU at all (the reasons then speak of RAM, not of the GPU)."""
    kvs = [forced_kv] if forced_kv else ["f16", "q8_0"]
    beside = "on the GPU beside the non-expert weights" if on_gpu else "in RAM beside the weights"
    for kv in kvs:
        if good(target, kv):
            why = []
            if kv == "q8_0" and not forced_kv:
                why.append(f"KV cache q8_0: with f16 the cache for {target} tokens does not fit {beside}; "
                           f"q8_0 halves it (needs flash attention: on)")
            return ContextChoice(target, kv, kv == "q8_0", why)
    if explicit:
        for kv in kvs:
            if feasible(target, kv):
                return ContextChoice(target, kv, kv == "q8_0", [
                    f"context {target} as asked: the GPU cannot also hold every layer's non-expert weights, "
                    f"so some layers run on the CPU (lower --ctx to keep them all on the GPU)"])
    for kv in kvs:
        best = largest_fitting(min(MIN_USEFUL_CTX, target), target, lambda c: good(c, kv))
        if best:
            return ContextChoice(best, kv, kv == "q8_0", [
                f"context {best} (of {target} {'asked' if explicit else 'aimed for'}): the largest whose KV "
                f"cache fits {beside} with a {kv} cache"])
    kv = kvs[-1]
    best = largest_fitting(CTX_STEP, target, lambda c: feasible(c, kv))
    if best:
        return ContextChoice(best, kv, kv == "q8_0", [f"context {best}: the largest that fits at all ({kv} cache)"])
    return None
