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
