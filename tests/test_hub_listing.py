"""Hub references, quant labels, split grouping, and a repo listing from the fake hub."""

from __future__ import annotations

import pytest

from hub_server import fake_hub, write_split_proxy  # noqa: F401
from moetui.errors import HubError
from moetui.hub.listing import (HubRef, RemoteFile, group_quants, list_repo, looks_like_hub_ref, parse_ref,
                                quant_label, select_quant)


@pytest.mark.parametrize("ref, want", [
    ("unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF:Q4_K_M", HubRef("unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF", "Q4_K_M")),
    ("ggml-org/gpt-oss-20b-GGUF", HubRef("ggml-org/gpt-oss-20b-GGUF")),
    ("hf.co/bartowski/x-GGUF:iq4_xs", HubRef("bartowski/x-GGUF", "iq4_xs")),
    ("unsloth/gpt-oss-120b-GGUF/Q4_K_M/gpt-oss-120b-Q4_K_M-00001-of-00002.gguf",
     HubRef("unsloth/gpt-oss-120b-GGUF", None, "Q4_K_M/gpt-oss-120b-Q4_K_M-00001-of-00002.gguf")),
    ("me/repo@v2:Q8_0", HubRef("me/repo", "Q8_0", None, "v2")),
    ("https://huggingface.co/me/repo/resolve/main/a-Q8_0.gguf", HubRef("me/repo", None, "a-Q8_0.gguf", "main")),
])
def test_parse_ref(ref: str, want: HubRef) -> None:
    assert parse_ref(ref) == want


@pytest.mark.parametrize("bad", ["foo", "./models/x.gguf", "/abs/x.gguf", "dir/model.gguf", "me/repo/README.md"])
def test_bad_refs_are_rejected(bad: str) -> None:
    assert not looks_like_hub_ref(bad) or bad.endswith(".md")
    with pytest.raises(HubError):
        parse_ref(bad)


@pytest.mark.parametrize("name, quant", [
    ("Qwen3-30B-A3B-Instruct-2507-Q4_K_M.gguf", "Q4_K_M"),
    ("Qwen3-30B-A3B-Instruct-2507-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("mixtral-8x7b-instruct-v0.1.Q5_K_M.gguf", "Q5_K_M"),
    ("gpt-oss-20b-mxfp4.gguf", "MXFP4"),
    ("Q4_K_M/gpt-oss-120b-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"),
    ("Qwen_Qwen3-30B-A3B-IQ4_XS.gguf", "IQ4_XS"),
    ("model-bf16-00002-of-00004.gguf", "BF16"),
    ("DeepSeek-V2-Lite-Chat-Q8_0.gguf", "Q8_0"),
])
def test_quant_label(name: str, quant: str) -> None:
    assert quant_label(name) == quant


def test_split_parts_become_one_quant_and_extras_are_skipped() -> None:
    files = [RemoteFile("Q4_K_M/m-Q4_K_M-00002-of-00002.gguf", 20), RemoteFile("Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", 100),
             RemoteFile("m-Q8_0.gguf", 300), RemoteFile("mmproj-F16.gguf", 5), RemoteFile("README.md", 1)]
    groups = group_quants(files)
    assert [(g.quant, g.size_bytes, [f.path.split("/")[-1] for f in g.files]) for g in groups] == [
        ("Q4_K_M", 120, ["m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"]),
        ("Q8_0", 300, ["m-Q8_0.gguf"]),
    ]


def test_list_repo_from_hub(fake_hub, tiny_moe, tiny_draft, tmp_path) -> None:
    parts = write_split_proxy(tmp_path, "tiny-moe-Q8_0", mix="Q8_0")
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    for p in parts:
        fake_hub.add_file("me/tiny-GGUF", f"Q8_0/{p.name}", p)
    fake_hub.add_file("me/tiny-GGUF", "README.md", tiny_draft)  # not a GGUF name: ignored
    listing = list_repo("me/tiny-GGUF")
    assert listing.commit == fake_hub.repos["me/tiny-GGUF"].commit
    by = {g.quant: g for g in listing.quants}
    assert set(by) == {"Q4_K_M", "Q8_0"}
    assert by["Q4_K_M"].size_bytes == tiny_moe.stat().st_size
    assert by["Q8_0"].size_bytes == sum(p.stat().st_size for p in parts)
    assert [f.path for f in by["Q8_0"].files] == [f"Q8_0/{p.name}" for p in parts]
    from hub_server import sha256_of

    assert by["Q4_K_M"].first.sha256 == sha256_of(tiny_moe)
    assert select_quant(listing, parse_ref("me/tiny-GGUF:q8_0")) is by["Q8_0"]
    assert select_quant(listing, parse_ref("me/tiny-GGUF")) is by["Q4_K_M"]  # llama.cpp's default
    assert select_quant(listing, parse_ref(f"me/tiny-GGUF/Q8_0/{parts[1].name}")) is by["Q8_0"]
    with pytest.raises(HubError, match="no quant IQ2_XS; available: Q4_K_M, Q8_0"):
        select_quant(listing, parse_ref("me/tiny-GGUF:IQ2_XS"))


def test_unknown_repo_is_a_hub_error(fake_hub) -> None:
    with pytest.raises(HubError, match="repository not found"):
        list_repo("nobody/nothing-GGUF")


def test_offline_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="^offline: "):
        list_repo("unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF")


def test_unreachable_hub_is_offline(fake_hub, monkeypatch) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError, match="^offline: .*cannot reach") as info:
        list_repo("me/anything")
    assert "refused the connection" in str(info.value) and "Errno" not in str(info.value)
    assert "ConnectError" not in str(info.value)
