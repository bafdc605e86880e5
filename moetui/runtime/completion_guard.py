"""A stopping criterion that holds llama-cpp-python's create_completion to max_tokens and to the context.

Why: llama-cpp-python 0.3.36's `_create_completion` holds back a token whose text ends in an incomplete
UTF-8 sequence (a lead byte 0xC0-0xFF with its continuation bytes still to come) with `continue` — and
that `continue` also skips the `len(completion_tokens) >= max_tokens` check (and the stop-string check).
A model that emits byte-fallback lead bytes without continuation bytes (random-weight proxies do:
`<0xDD><0xDD>...`) therefore generates past max_tokens; if the run reaches the end of the context, the
next llama_decode finds no KV-cache cell and fails: "decode: failed to find a memory slot for batch of
size 1" -> RuntimeError("llama_decode returned 1"). `generate()` has no such check (the caller counts),
so it works. Stopping criteria are checked inside `generate()` before each token is handed out, so this
guard holds whatever the detokenizer says.

The worker no longer streams through create_completion (moetui/runtime/streaming.py has its own loop, which
counts tokens itself); the guard stays as that loop's stopping criterion, so the context limit and the
budget hold the same way on both token paths (the native loop and Llama.generate with a draft model).
"""

from __future__ import annotations

from typing import Any


class TokenBudget:
    """llama-cpp-python stopping criterion: True once `max_tokens` tokens were handed out (max_tokens
    None or <= 0: no budget) or when the token just sampled would not fit in the KV cache (`n_ctx`).

    `input_ids` is the tokens decoded so far (prompt + generated, without the token just sampled), so
    the budget is counted from its length, not from calls: create_completion calls the criterion once
    more after generating, and that call must not end a completion that stopped at max_tokens by itself.
    One instance per completion."""

    def __init__(self, max_tokens: int | None, n_ctx: int) -> None:
        self.max_tokens = max_tokens if max_tokens and max_tokens > 0 else None
        self.n_ctx = n_ctx
        self.n_prompt: int | None = None
        self.hit = False  # the guard (not llama-cpp-python) ended the completion

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        n = len(input_ids)
        if self.n_prompt is None:
            self.n_prompt = n
        over_budget = self.max_tokens is not None and n - self.n_prompt >= self.max_tokens
        if over_budget or n >= self.n_ctx:
            self.hit = True
            return True
        return False
