"""Speculative decoding on real tiny proxies: same greedy tokens with and without a draft, acceptance
reported, a draft with another vocabulary refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moetui.config import DraftConfig, RunConfig
from moetui.errors import DraftMismatch
from moetui.model.proxy import write_proxy
from moetui.model.shapes import load_shape, scaled
from moetui.runtime.client import ModelWorker, collect

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


def test_prompt_lookup_gives_identical_greedy_tokens(tiny_moe: Path, plain: list[str]) -> None:
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=512, draft=DraftConfig(kind="ngram", draft_max=4))
    texts, stats = _texts(cfg)
    assert texts == plain
    assert sum(s.draft_accepted for s in stats) > 0 and all(s.acceptance is not None for s in stats)


def test_draft_with_another_vocabulary_is_refused(tiny_moe: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-vocab.gguf"
    write_proxy(dataclasses.replace(scaled(load_shape("qwen3-0.6b"), "tiny"), n_vocab=1024), other, "Q8_0")
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=256, draft=DraftConfig(model_path=str(other)))
    w = ModelWorker()
    with pytest.raises(DraftMismatch, match="1024"):
        w.start(cfg)
    assert not w.alive
