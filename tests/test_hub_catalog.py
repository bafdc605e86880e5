"""presets/models.toml is consistent with itself, the shape presets and the reference parser: every published
file name resolves to its quant through the same code a download uses, and every draft pairing shares the
target's tokenizer (same family name, same vocabulary size in the shape presets)."""

from __future__ import annotations

import pytest

from moetui.errors import ConfigError
from moetui.hub.catalog import drafts_for, find_model, find_quant, load_catalog
from moetui.hub.listing import RemoteFile, RepoListing, group_quants, parse_ref, quant_label, select_quant
from moetui.model.shapes import list_shapes, load_shape

CATALOG = load_catalog()
TARGETS = [m for m in CATALOG if m.role == "target"]


def test_catalog_covers_the_models_people_run() -> None:
    names = {m.name for m in CATALOG}
    for want in ("Qwen3-30B-A3B-Instruct-2507", "Qwen3-Coder-30B-A3B-Instruct", "Qwen3-235B-A22B-Instruct-2507",
                 "gpt-oss-20b", "gpt-oss-120b", "GLM-4.5-Air", "Llama-4-Scout-17B-16E-Instruct",
                 "Mixtral-8x7B-Instruct-v0.1", "DeepSeek-V2-Lite-Chat"):
        assert want in names
    assert len({m.id for m in CATALOG}) == len(CATALOG)
    assert all(m.tokenizer and m.quants for m in CATALOG)


@pytest.mark.parametrize("model", CATALOG, ids=lambda m: m.id)
def test_entry_is_consistent(model) -> None:
    if model.shape:
        assert model.shape in list_shapes()
    for repo in model.repos:
        assert parse_ref(repo).repo == repo and repo.endswith("GGUF")
    for q in model.quants:
        assert q.repo in model.repos and q.size_bytes > 0 and q.size_source and q.files
        assert {quant_label(f) for f in q.files} == {q.quant}
        # the same resolution a download does: published names -> groups -> REPO:QUANT picks exactly these files
        listing = RepoListing(q.repo, "main", None, group_quants([RemoteFile(f, 1) for f in reversed(q.files)]))
        assert [f.path for f in select_quant(listing, parse_ref(q.ref)).files] == q.files


@pytest.mark.parametrize("model", [m for m in TARGETS if m.drafts], ids=lambda m: m.id)
def test_drafts_share_the_tokenizer_and_are_small(model) -> None:
    target_vocab = load_shape(model.shape).n_vocab
    for draft, quant in drafts_for(model, CATALOG):
        assert draft.tokenizer == model.tokenizer
        if draft.shape:
            assert load_shape(draft.shape).n_vocab == target_vocab
        assert quant.size_bytes * 5 < min(q.size_bytes for q in model.quants)  # worth drafting with


def test_tokenizer_families_agree_with_shape_vocabularies() -> None:
    """Two catalog models with shapes and the same tokenizer name have the same vocabulary size."""
    vocab: dict[str, int] = {}
    for m in CATALOG:
        if m.shape:
            assert vocab.setdefault(m.tokenizer, load_shape(m.shape).n_vocab) == load_shape(m.shape).n_vocab, m.id


def test_lookups() -> None:
    assert find_model("unsloth/gpt-oss-20b-GGUF").id == "gpt-oss-20b"
    assert find_model("GLM-4.5-AIR").id == "glm-4.5-air"
    assert find_model("nothing") is None
    model, quant = find_quant("ggml-org/gpt-oss-120b-GGUF:mxfp4")
    assert model.id == "gpt-oss-120b" and len(quant.files) == 3
    assert find_quant("ggml-org/gpt-oss-120b-GGUF:Q2_K") is None


def test_bad_catalogs_are_config_errors(tmp_path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text("[[model]]\nid = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_catalog(bad)
    bad.write_text('[[model]]\nid = "x"\n')
    with pytest.raises(ConfigError, match="model #1 is malformed"):
        load_catalog(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_catalog(tmp_path / "missing.toml")
    bad.write_text('[[model]]\nid = "t"\ntokenizer = "a"\nrepos = ["x/t-GGUF"]\ndrafts = ["x/d-GGUF:Q8_0"]\n'
                   '[[model]]\nid = "d"\ntokenizer = "b"\nrepos = ["x/d-GGUF"]\n'
                   '  [[model.quant]]\n  quant = "Q8_0"\n  size_bytes = 1\n')
    catalog = load_catalog(bad)
    with pytest.raises(ConfigError, match="names draft x/d-GGUF:Q8_0 .b tokenizer"):
        drafts_for(catalog[0], catalog)
