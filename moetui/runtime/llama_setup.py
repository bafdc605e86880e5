"""RunConfig -> llama-cpp-python: constructor arguments, context parameters, and recreating a context on
a loaded model (a "reconfigure": new batch sizes, flash attention or KV types without reloading weights).
Worker-process only: importing llama_cpp here is fine, callers are in worker_main."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
from llama_cpp import _internals as internals
from llama_cpp import llama_cpp as L

from moetui.config import RunConfig
from moetui.config.llama_flags import FLASH_ATTN_IDS as FLASH_ATTN
from moetui.config.llama_flags import GGML_TYPES as CACHE_TYPES
from moetui.config.llama_flags import llama_kwargs as table_kwargs


@dataclass
class ContextSettings:
    """The settings that live in a llama_context, not in the model: changing them needs no reload."""

    n_ctx: int
    n_batch: int
    n_ubatch: int
    flash_attn: str
    cache_type_k: str
    cache_type_v: str
    n_threads: int | None
    n_threads_batch: int | None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "ContextSettings":
        return cls(cfg.n_ctx, cfg.n_batch, cfg.n_ubatch, cfg.flash_attn, cfg.cache_type_k, cfg.cache_type_v,
                   cfg.n_threads, cfg.n_threads_batch)

    def apply(self, params: Any) -> None:
        params.n_ctx = self.n_ctx
        params.n_batch = min(self.n_batch, self.n_ctx) if self.n_ctx else self.n_batch
        params.n_ubatch = min(self.n_ubatch, params.n_batch)
        params.flash_attn_type = FLASH_ATTN[self.flash_attn]
        params.type_k = CACHE_TYPES[self.cache_type_k]
        params.type_v = CACHE_TYPES[self.cache_type_v]
        if self.n_threads:
            params.n_threads = self.n_threads
        if self.n_threads_batch:
            params.n_threads_batch = self.n_threads_batch


def llama_kwargs(cfg: RunConfig, *, n_gpu_layers: int | None = None, n_ctx: int | None = None) -> dict[str, Any]:
    """Keyword arguments for llama_cpp.Llama (the table's mapping, moetui.config.llama_flags), with
    llama.cpp's log on: it is how we learn buffer sizes and placement."""
    return {**table_kwargs(cfg, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx), "verbose": True}


def set_threads(llm: Any, n_threads: int | None, n_threads_batch: int | None) -> None:
    p = llm.context_params
    nt = n_threads or p.n_threads
    ntb = n_threads_batch or (n_threads if n_threads and not p.n_threads_batch else p.n_threads_batch)
    L.llama_set_n_threads(llm._ctx.ctx, nt, ntb)
    p.n_threads, p.n_threads_batch = nt, ntb
    llm.n_threads, llm.n_threads_batch = nt, ntb


def recreate_context(llm: Any, settings: ContextSettings) -> None:
    """Replace a Llama's llama_context, keeping its model: the old context (KV cache, compute buffers)
    is freed first so both never hold memory at once. On failure the old settings are restored and the
    error re-raised. Reaches into llama-cpp-python 0.3.36's internals (_ctx, _batch, scores): pinned."""
    old_params = llm.context_params
    params = L.llama_context_params()
    ctypes_copy(params, old_params)
    settings.apply(params)

    def build(p: Any) -> None:
        llm._ctx = internals.LlamaContext(model=llm._model, params=p, verbose=llm.verbose)
        llm._batch.close()
        llm._batch = internals.LlamaBatch(n_tokens=p.n_batch, embd=0, n_seq_max=p.n_ctx, verbose=llm.verbose)
        llm.context_params = p
        llm.n_batch = p.n_batch
        llm.n_threads, llm.n_threads_batch = p.n_threads, p.n_threads_batch
        llm._n_ctx = llm.n_ctx()
        llm.input_ids = np.ndarray((llm._n_ctx,), dtype=np.intc)
        llm.scores = np.ndarray((llm._n_ctx if llm._logits_all else llm.n_batch, llm._n_vocab), dtype=np.single)
        llm.n_tokens = 0
        llm._requires_eval = True

    llm._ctx.close()
    try:
        build(params)
    except Exception:
        build(old_params)
        raise


def ctypes_copy(dst: Any, src: Any) -> None:
    ctypes.memmove(ctypes.addressof(dst), ctypes.addressof(src), ctypes.sizeof(src))
