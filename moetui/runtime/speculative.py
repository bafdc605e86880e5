"""Speculative decoding through llama-cpp-python's `LlamaDraftModel` interface.

`Llama.generate` asks the draft for candidate tokens after each accepted token, evaluates them in one
batch on the target and keeps the prefix the target would have sampled itself; with greedy sampling the
output is the same tokens as without a draft. Two drafts: `ModelDraft` (a second, smaller Llama with the
same vocabulary, its own placement) and llama-cpp-python's prompt-lookup decoding (no second model).
`CountingDraft` wraps either and works out how many proposed tokens the target accepted.

Cost to know: with a draft, llama-cpp-python keeps logits for every position (n_vocab floats per token
of context) — its design, not ours.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import numpy.typing as npt
from llama_cpp import llama_cpp as L
from llama_cpp.llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

from moetui.errors import DraftMismatch

# The same compatibility rules as llama.cpp's common_speculative_are_compatible (speculative.cpp).
VOCAB_MAX_SIZE_DIFFERENCE = 128
VOCAB_CHECK_START_TOKEN_ID = 5


def check_vocab_compatible(target: Any, draft: Any, draft_name: str = "draft") -> None:
    """Raise DraftMismatch unless the draft tokenizes exactly like the target: same vocabulary type,
    BOS/EOS, sizes within llama.cpp's tolerance, and identical token texts over the shared range."""
    tv, dv = target._model.vocab, draft._model.vocab
    n_t, n_d = L.llama_vocab_n_tokens(tv), L.llama_vocab_n_tokens(dv)
    if L.llama_vocab_type(tv) != L.llama_vocab_type(dv):
        raise DraftMismatch(f"{draft_name}: its tokenizer type differs from the target model's")
    if abs(n_t - n_d) > VOCAB_MAX_SIZE_DIFFERENCE:
        raise DraftMismatch(f"{draft_name}: vocabulary of {n_d} tokens, the target has {n_t} (they must match)")
    for what, fn in (("BOS", L.llama_vocab_bos), ("EOS", L.llama_vocab_eos)):
        if fn(tv) != fn(dv):
            raise DraftMismatch(f"{draft_name}: {what} token {fn(dv)} differs from the target's {fn(tv)}")
    first: tuple[int, bytes, bytes] | None = None
    n_diff = 0
    shared = range(VOCAB_CHECK_START_TOKEN_ID, min(n_t, n_d))
    for i in shared:
        a, b = L.llama_vocab_get_text(tv, i) or b"", L.llama_vocab_get_text(dv, i) or b""
        if a != b:
            first = first or (i, a, b)
            n_diff += 1  # keep counting: "1 token" and "every token" call for different fixes
    if first is not None:
        i, a, b = first
        raise DraftMismatch(
            f"{draft_name}: its vocabulary differs from the target's (same tokenizer type, {n_d} vs {n_t} "
            f"tokens, but {n_diff} of the {len(shared)} token texts compared differ); the first is token {i}: "
            f"{_token_text(b)} in the draft, {_token_text(a)} in the target. Use a draft model from the "
            "target's family, which shares its tokenizer"
        )


def _token_text(raw: bytes) -> str:
    """A token's text as the user would recognise it: decoded, quoted, control characters escaped
    (repr of a str, not of bytes, so '▁the' reads as such rather than as b'\\xe2\\x96\\x81the')."""
    return repr(raw.decode("utf-8", "replace"))


class ModelDraft(LlamaDraftModel):
    """Greedy drafting with a second Llama: keep its KV cache in step with the target's tokens (reusing
    the common prefix), then propose up to `draft_max` tokens, stopping early when its top token's
    probability falls under `p_min`; a proposal shorter than `draft_min` is dropped (llama.cpp's rules)."""

    def __init__(self, llm: Any, draft_max: int = 16, draft_min: int = 0, p_min: float = 0.0) -> None:
        self.llm = llm
        self.draft_max = draft_max
        self.draft_min = draft_min
        self.p_min = p_min
        self.n_vocab = llm.n_vocab()

    def _logits(self) -> npt.NDArray[np.single]:
        ptr = L.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        empty = np.array([], dtype=np.intc)
        ids = [int(t) for t in input_ids]
        llm = self.llm
        if not ids or max(ids) >= self.n_vocab or len(ids) + self.draft_max >= llm.n_ctx():
            return empty
        common = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # re-evaluate at least one token: its logits seed the draft
        llm.n_tokens = common
        llm.eval(ids[common:])
        out: list[int] = []
        while len(out) < self.draft_max:
            logits = self._logits()
            tok = int(np.argmax(logits))
            if self.p_min > 0.0:
                z = logits - logits[tok]
                p = 1.0 / float(np.exp(z).sum())
                if p < self.p_min:
                    break
            out.append(tok)
            if len(out) < self.draft_max:
                llm.eval([tok])
        if len(out) < max(self.draft_min, 1):
            return empty
        return np.array(out, dtype=np.intc)


class CountingDraft(LlamaDraftModel):
    """Wraps a draft and counts proposed vs accepted tokens. Llama.generate calls the draft with the
    target's tokens so far; on the next call the tokens between the previous context and the new last
    token are the accepted part of the previous proposal, so acceptance = matching prefix length."""

    def __init__(self, inner: LlamaDraftModel | None) -> None:
        self.inner = inner  # None until the draft is loaded (the target must be built with a draft)
        self.proposed = 0
        self.accepted = 0
        self._pending: tuple[int, npt.NDArray[np.intc]] | None = None

    def reset(self) -> None:
        self._pending = None

    def _resolve(self, ids: npt.NDArray[np.intc], complete: bool) -> None:
        if self._pending is None:
            return
        start, draft = self._pending
        self._pending = None
        # on a normal call the last id is the target's own sample (a correction or the bonus token)
        seen = ids[start:] if complete else ids[start : len(ids) - 1]
        if not complete and len(ids) - 1 < start:
            return  # a new prompt (the cache was reset): the old proposal was never judged
        n = min(len(seen), len(draft))
        if complete and n < len(draft):
            draft = draft[:n]  # generation ended inside the proposal: only judge the positions reached
        acc = 0
        for a, b in zip(seen[:n], draft[:n]):
            if a != b:
                break
            acc += 1
        self.proposed += len(draft)
        self.accepted += acc

    def finish(self, final_ids: list[int] | npt.NDArray[np.intc]) -> None:
        """Judge the last proposal against the tokens generation ended with."""
        self._resolve(np.asarray(final_ids, dtype=np.intc), complete=True)

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        self._resolve(input_ids, complete=False)
        if self.inner is None:
            return np.array([], dtype=np.intc)
        out = self.inner(input_ids, **kwargs)
        if len(out):
            self._pending = (len(input_ids), np.array(out, dtype=np.intc))
        return out

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None


class PromptLookupDraft(LlamaPromptLookupDecoding):
    """llama-cpp-python's prompt-lookup decoding, plus draft_min as ModelDraft applies it: a continuation
    shorter than draft_min is not proposed (it would cost a batched target pass for too little gain).
    The parent only knows num_pred_tokens, the upper bound."""

    def __init__(self, draft_max: int, draft_min: int = 0, ngram: int = 2) -> None:
        super().__init__(max_ngram_size=ngram, num_pred_tokens=draft_max)
        self.draft_min = draft_min

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        out = super().__call__(input_ids, **kwargs)
        if len(out) < self.draft_min:
            return np.array([], dtype=np.intc)
        return out


def prompt_lookup_draft(draft_max: int, draft_min: int = 0, ngram: int = 2) -> LlamaDraftModel:
    return PromptLookupDraft(draft_max, draft_min, ngram)
