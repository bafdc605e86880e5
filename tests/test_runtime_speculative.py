"""Speculative decoding on real tiny proxies: same greedy tokens with and without a draft, acceptance
reported, a draft with another vocabulary refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from moetui.config import DraftConfig, RunConfig
from moetui.errors import DraftMismatch
from moetui.model.proxy import write_proxy
from moetui.model.shapes import load_shape, scaled
from moetui.runtime.client import ModelWorker, collect
from moetui.runtime.speculative import prompt_lookup_draft

PROMPTS = ["hello world the model", "fast speed memory expert layer token"]


def _texts(cfg: RunConfig) -> tuple[list[str], list]:
    with ModelWorker() as w:
        w.start(cfg)
        # repeat_penalty keeps a random-weight proxy from looping on one token, so the check has teeth
        done = [collect(w.generate(p, max_tokens=32, repeat_penalty=1.5)) for p in PROMPTS]
    return [d.text for d in done], [d.stats for d in done]


@pytest.fixture(scope="module")
def plain(tiny_moe: Path) -> list[str]:
    texts, _ = _texts(RunConfig(model_path=str(tiny_moe), n_ctx=512))
    assert len(set(texts)) == len(texts)  # different prompts, different outputs: not a degenerate model
    return texts


def test_model_draft_gives_identical_greedy_tokens(tiny_moe: Path, tiny_draft: Path, plain: list[str]) -> None:
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=512, draft=DraftConfig(model_path=str(tiny_draft), draft_max=4))
    texts, stats = _texts(cfg)
    assert texts == plain
    assert all(s.draft_proposed > 0 for s in stats)
    assert all(0 <= s.draft_accepted <= s.draft_proposed for s in stats)


@pytest.mark.parametrize("draft_min", [0, 2])
def test_prompt_lookup_gives_identical_greedy_tokens(tiny_moe: Path, plain: list[str], draft_min: int) -> None:
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=512,
                    draft=DraftConfig(kind="ngram", draft_max=4, draft_min=draft_min))
    texts, stats = _texts(cfg)
    assert texts == plain
    assert sum(s.draft_accepted for s in stats) > 0 and all(s.acceptance is not None for s in stats)


def test_prompt_lookup_draft_min_above_any_match_proposes_nothing(tiny_moe: Path, plain: list[str]) -> None:
    """draft_min reaches the worker's prompt-lookup draft: one longer than draft_max can never be met,
    so nothing is proposed, and the greedy tokens are still the plain ones."""
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=512, draft=DraftConfig(kind="ngram", draft_max=4, draft_min=5))
    texts, stats = _texts(cfg)
    assert texts == plain
    assert all(s.draft_proposed == 0 for s in stats)


def test_prompt_lookup_draft_min_drops_short_continuations() -> None:
    """[7 1 2 3 1 2]: the last bigram (1 2) was seen at 1, followed by only 3 tokens (3 1 2) before
    the end of the context, so with draft_max 4 the lookup proposes 3 tokens."""
    ids = np.array([7, 1, 2, 3, 1, 2], dtype=np.intc)
    assert prompt_lookup_draft(4)(ids).tolist() == [3, 1, 2]
    assert prompt_lookup_draft(4, draft_min=3)(ids).tolist() == [3, 1, 2]
    assert prompt_lookup_draft(4, draft_min=4)(ids).tolist() == []
    assert prompt_lookup_draft(2, draft_min=2)(ids).tolist() == [3, 1]  # draft_max still caps it
    assert prompt_lookup_draft(4, draft_min=1)(np.array([5, 6, 7], dtype=np.intc)).tolist() == []  # no match


def test_draft_with_another_vocabulary_is_refused(tiny_moe: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-vocab.gguf"
    write_proxy(dataclasses.replace(scaled(load_shape("qwen3-0.6b"), "tiny"), n_vocab=1024), other, "Q8_0")
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=256, draft=DraftConfig(model_path=str(other)))
    w = ModelWorker()
    with pytest.raises(DraftMismatch, match="1024"):
        w.start(cfg)
    assert not w.alive


def test_draft_with_same_size_but_other_token_texts_is_refused(tiny_moe: Path, tmp_path: Path) -> None:
    """Same tokenizer type, size, BOS and EOS: only the token-text comparison can catch this one. The
    message says the vocabularies differ and names the first differing token in readable text."""
    other = tmp_path / "same-size-other-texts.gguf"
    write_proxy(scaled(load_shape("qwen3-0.6b"), "tiny"), other, "Q8_0", vocab_variant=1)
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=256, draft=DraftConfig(model_path=str(other)))
    w = ModelWorker()
    with pytest.raises(DraftMismatch) as err:
        w.start(cfg)
    msg = str(err.value)
    assert msg.startswith("same-size-other-texts.gguf: its vocabulary differs from the target's")
    assert "2048 vs 2048 tokens" in msg
    # token 261 is the first word piece; 5..260 (controls, bytes) are the same in both
    assert "the first is token 261: 'the' in the draft, '\u2581the' in the target" in msg
    assert "b'" not in msg  # decoded text, not a bytes repr
    assert not w.alive
