"""Sizing a model on the hub from its header alone (HTTP range reads), and resolving references."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_server import big_vocab_model, fake_hub, write_split_proxy  # noqa: F401
from moetui.errors import HubError, ModelFileError
from moetui.hub.download import download_model
from moetui.hub.remote import HubRangeSource, inspect_ref, inspect_remote, resolve_model_ref
from moetui.model.gguf_header import read_header
from moetui.model.inspect import inspect_file
from moetui.model.shapes import shape_from_info


def test_remote_header_matches_local_and_reads_only_the_header(fake_hub, tiny_moe) -> None:
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    src = HubRangeSource("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf")
    header = read_header(src)
    assert src.size() == tiny_moe.stat().st_size
    assert src.requests == 1  # one range request covered the whole header
    # it asked for a range, never the whole file (the tiny file is smaller than the read-ahead window,
    # so what matters is the Range header the CDN saw)
    gets = [e for e in fake_hub.log if e[0] == "GET" and e[1].startswith("/cdn/")]
    assert gets and all(rng and rng.startswith("bytes=0-") for _, _, rng in gets)
    assert header.data_offset < src.bytes_fetched

    info = inspect_remote("me/tiny-GGUF:Q4_K_M")
    local = inspect_file(tiny_moe)
    assert info.identity == local.identity
    assert (info.total_bytes, info.n_expert, info.n_layers) == (local.total_bytes, local.n_expert, local.n_layers)
    assert info.files == ["hf://me/tiny-GGUF/tiny-moe-Q4_K_M.gguf"]
    assert info.file_bytes == tiny_moe.stat().st_size
    assert shape_from_info(info).n_expert == local.n_expert  # `moetui proxy --like REPO:QUANT` works from this


def test_large_header_is_read_in_ranges_never_the_weights(fake_hub, big_vocab_model, monkeypatch) -> None:
    import moetui.hub.remote as remote

    fake_hub.add_file("me/big-GGUF", big_vocab_model.name, big_vocab_model)
    local = inspect_file(big_vocab_model)
    src = HubRangeSource("me/big-GGUF", big_vocab_model.name)
    header = read_header(src)
    assert header.data_offset > 3_000_000  # the vocabulary really is in the header
    assert src.requests == 1 and src.bytes_fetched == remote.READAHEAD  # one 4 MiB read covers it
    assert src.bytes_fetched < src.size() // 10

    monkeypatch.setattr(remote, "READAHEAD", 0)  # now only the reader's own 1 MiB steps
    src = HubRangeSource("me/big-GGUF", big_vocab_model.name)
    header = read_header(src)
    assert src.requests >= 4  # "more if the header says so"
    assert header.data_offset <= src.bytes_fetched < header.data_offset + (2 << 20)
    assert inspect_remote("me/big-GGUF:Q4_K_M").identity == local.identity


def test_split_model_reads_every_part_header(fake_hub, tmp_path) -> None:
    parts = write_split_proxy(tmp_path, "tiny-moe-Q4_K_M", n_parts=2)
    for p in parts:
        fake_hub.add_file("me/split-GGUF", p.name, p)
    info = inspect_remote("me/split-GGUF:Q4_K_M")
    local = inspect_file(parts[0])
    assert info.identity == local.identity
    assert len(info.tensors) == len(local.tensors) and info.total_bytes == local.total_bytes
    assert len(info.files) == 2
    heads = [e for e in fake_hub.log if e[0] == "HEAD"]
    assert len(heads) == 2


def test_resolve_model_ref(fake_hub, tiny_moe, tmp_path, monkeypatch) -> None:
    assert resolve_model_ref(str(tiny_moe)) == tiny_moe
    with pytest.raises(ModelFileError, match="no such file"):
        resolve_model_ref(str(tmp_path / "missing.gguf"))
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    remote = resolve_model_ref("me/tiny-GGUF:Q4_K_M")
    assert not isinstance(remote, Path) and remote.identity == inspect_file(tiny_moe).identity

    path = download_model("me/tiny-GGUF:Q4_K_M").path
    # once cached, a reference resolves to the local file, and keeps doing so offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_ref("me/tiny-GGUF:Q4_K_M") == path
    assert inspect_ref("me/tiny-GGUF:q4_k_m").identity == inspect_file(tiny_moe).identity
    with pytest.raises(HubError, match="^offline: "):
        resolve_model_ref("me/tiny-GGUF:Q8_0")  # not cached, and the hub is off limits


def test_missing_quant_names_what_exists(fake_hub, tiny_moe) -> None:
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    with pytest.raises(HubError, match="available: Q4_K_M"):
        inspect_remote("me/tiny-GGUF:Q6_K")


@pytest.mark.parametrize("redirect", [True, False], ids=["lfs-via-cdn", "served-by-hub"])
def test_token_goes_to_the_hub_only_and_both_serving_styles_work(redirect, monkeypatch, tmp_path, tiny_moe) -> None:
    """LFS files redirect to a CDN on another host: the HF token must not follow them there. Files the hub
    serves itself (ETag + Content-Length, no redirect) inspect and download the same way."""
    from hub_server import FakeHub, sha256_of

    hub = FakeHub(redirect=redirect)
    try:
        with hub.activate(monkeypatch, tmp_path / "hf-cache"):
            hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
            assert inspect_remote("me/tiny-GGUF:Q4_K_M").identity == inspect_file(tiny_moe).identity
            result = download_model("me/tiny-GGUF:Q4_K_M")
    finally:
        hub.close()
    assert sha256_of(result.path) == sha256_of(tiny_moe) and result.verified == ["tiny-moe-Q4_K_M.gguf"]
    # (huggingface_hub also fetches its own /api/agent-harnesses registry, anonymously: not ours to check)
    hub_calls = [auth for path, auth in hub.auth_log if path.startswith("/api/models/") or "/resolve/" in path]
    cdn_calls = [auth for path, auth in hub.auth_log if path.startswith("/cdn/")]
    assert hub_calls and all(auth == "Bearer hf_fake_test_token" for auth in hub_calls)
    assert len(cdn_calls) == (2 if redirect else 0) and not any(cdn_calls)
