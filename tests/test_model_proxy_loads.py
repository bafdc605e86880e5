"""Real llama-cpp-python loads every tiny proxy and generates tokens from it."""

from __future__ import annotations

import pytest
from llama_cpp import Llama

from moetui.model.proxy import write_proxy
from moetui.model.shapes import load_shape, scaled
from moetui.model.vocab import make_vocab

from conftest import TINY_SHAPES


@pytest.mark.parametrize("shape_name", TINY_SHAPES)
def test_llama_cpp_loads_and_generates(tiny_model, shape_name: str) -> None:
    mix = "MXFP4" if shape_name.startswith("gpt-oss") else "Q4_K_M"
    llm = Llama(str(tiny_model(shape_name, mix)), n_ctx=256, n_threads=2, verbose=False, seed=1)
    try:
        assert llm.n_vocab() == scaled(load_shape(shape_name), "tiny").n_vocab
        out = llm.create_completion("hello world", max_tokens=8, temperature=0)
        assert out["usage"]["completion_tokens"] == 8
        # a second call reuses the cached prefix (the path where KV-cache slot errors showed up before)
        out2 = llm.create_completion("hello world again", max_tokens=8, temperature=0)
        assert out2["usage"]["completion_tokens"] == 8
        chat = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4, temperature=0)
        assert chat["choices"][0]["message"]["role"] == "assistant"
    finally:
        llm.close()


@pytest.mark.parametrize("mix", ["Q8_0", "Q6_K", "Q5_K_M", "Q4_0", "Q3_K_M", "Q2_K", "F16"])
def test_other_quant_mixes_load(tmp_path, mix: str) -> None:
    path = tmp_path / f"m-{mix}.gguf"
    write_proxy(scaled(load_shape("qwen3-30b-a3b"), "tiny"), path, mix)
    llm = Llama(str(path), n_ctx=128, n_threads=2, verbose=False)
    try:
        toks = llm.tokenize(b"hello")
        llm.eval(toks)
        assert llm.n_tokens == len(toks)
    finally:
        llm.close()


def test_draft_and_target_share_vocabulary(tiny_moe, tiny_draft) -> None:
    a = Llama(str(tiny_moe), n_ctx=64, verbose=False, vocab_only=True)
    b = Llama(str(tiny_draft), n_ctx=64, verbose=False, vocab_only=True)
    try:
        assert a.n_vocab() == b.n_vocab()
        assert all(a.detokenize([i]) == b.detokenize([i]) for i in range(a.n_vocab()))
    finally:
        a.close()
        b.close()


def test_vocab_is_deterministic() -> None:
    assert make_vocab(3000)["tokenizer.ggml.tokens"] == make_vocab(3000)["tokenizer.ggml.tokens"]
    assert len(set(make_vocab(5000)["tokenizer.ggml.tokens"])) == 5000


def test_vocab_variant_has_the_same_size_and_other_word_pieces(tmp_path) -> None:
    """The variant a mismatched-draft test needs: same size, same control/byte tokens (so BOS/EOS and
    the tokenizer type match), other texts from the first word piece on, and llama.cpp loads it."""
    base, other = make_vocab(2048), make_vocab(2048, variant=1)
    a, b = base["tokenizer.ggml.tokens"], other["tokenizer.ggml.tokens"]
    assert len(b) == len(set(b)) == 2048 and len(other["tokenizer.ggml.scores"]) == 2048
    assert a[:261] == b[:261] and (a[261], b[261]) == ("\u2581the", "the")
    assert sum(x != y for x, y in zip(a, b)) > 1000
    path = tmp_path / "variant.gguf"
    write_proxy(scaled(load_shape("qwen3-0.6b"), "tiny"), path, "Q8_0", vocab_variant=1)
    llm = Llama(str(path), n_ctx=64, verbose=False, vocab_only=True)
    try:
        assert llm.n_vocab() == 2048 and llm.detokenize([261]) == b"the"
    finally:
        llm.close()


# <0xDD>: a byte-fallback UTF-8 lead byte. Random-weight proxies emit runs of such bytes with no
# continuation bytes (the Q8_0 tiny qwen3moe, seed 0, greedy after "The quick brown fox" does, from its
# 25th token on); biasing the sampler to it makes that run start at once.
_ORPHAN_LEAD_BYTE = 5 + 0xDD


def _force_orphan_lead_byte(input_ids, scores):
    scores = scores.copy()
    scores[_ORPHAN_LEAD_BYTE] += 100.0
    return scores


def test_orphan_utf8_lead_bytes_overrun_create_completion_without_the_guard(tiny_model) -> None:
    """The cause of "decode: failed to find a memory slot for batch of size 1" in create_completion
    while generate() works: llama-cpp-python 0.3.36 holds back incomplete UTF-8 with a `continue` that
    skips its max_tokens check, so it decodes until the KV cache is full. If this starts failing, the
    library fixed it and moetui.runtime.completion_guard may go."""
    llm = Llama(str(tiny_model()), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False, seed=1)
    bias = {_ORPHAN_LEAD_BYTE: 100.0}
    try:
        assert llm.detokenize([_ORPHAN_LEAD_BYTE]) == b"\xdd"
        prompt = llm.tokenize(b"hello world")
        n = 0
        for tok in llm.generate(prompt, temp=0, logits_processor=[_force_orphan_lead_byte]):
            assert tok == _ORPHAN_LEAD_BYTE
            n += 1
            if n == 8:
                break  # generate(): the caller counts, nothing goes wrong
        with pytest.raises(RuntimeError, match="llama_decode returned 1"):
            llm.create_completion("hello world", max_tokens=8, temperature=0, logit_bias=bias)
        assert llm.n_tokens == llm.n_ctx()  # it ran to the end of the KV cache, not to 8 tokens
    finally:
        llm.close()


@pytest.mark.parametrize("max_tokens", [8, None])
def test_token_budget_holds_create_completion_to_max_tokens_and_the_context(tiny_model, max_tokens) -> None:
    from moetui.runtime.completion_guard import TokenBudget
    from llama_cpp import StoppingCriteriaList

    llm = Llama(str(tiny_model()), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False, seed=1)
    try:
        budget = TokenBudget(max_tokens, llm.n_ctx())
        out = llm.create_completion("hello world", max_tokens=max_tokens, temperature=0,
                                    logit_bias={_ORPHAN_LEAD_BYTE: 100.0},
                                    stopping_criteria=StoppingCriteriaList([budget]))
        u = out["usage"]
        want = max_tokens or llm.n_ctx() - u["prompt_tokens"]
        assert budget.hit and u["completion_tokens"] == want and llm.n_tokens <= llm.n_ctx()
        # a completion that stops by itself is left alone (create_completion calls the criterion once more)
        plain = TokenBudget(8, llm.n_ctx())
        out = llm.create_completion("hello world", max_tokens=8, temperature=0,
                                    stopping_criteria=StoppingCriteriaList([plain]))
        assert out["usage"]["completion_tokens"] == 8 and out["choices"][0]["finish_reason"] == "length"
        assert not plain.hit
    finally:
        llm.close()


def test_worker_completion_stops_at_max_tokens_on_orphan_lead_bytes(tiny_model, tmp_path) -> None:
    """moetui's worker (create_completion, streamed) ends at max_tokens with finish "length" instead of
    dying with "llama_decode returned 1" when the model emits incomplete UTF-8."""
    import functools
    import io
    import json

    from moetui.runtime.worker_main import Worker

    out = io.StringIO()
    w = Worker(out, str(tmp_path / "worker.log"))
    w.llm = Llama(str(tiny_model()), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False, seed=1)
    try:
        w.llm.create_completion = functools.partial(w.llm.create_completion, logit_bias={_ORPHAN_LEAD_BYTE: 100.0})
        w.op_generate({"id": 1, "prompt": "hello world", "max_tokens": 8, "temperature": 0.0})
        done = [e for e in map(json.loads, out.getvalue().splitlines()) if e["ev"] == "done"][-1]
        assert done["finish_reason"] == "length" and not done["cancelled"]
        assert done["stats"]["tokens"] == 8 and w.llm.n_tokens < w.llm.n_ctx()
    finally:
        w.llm.close()
