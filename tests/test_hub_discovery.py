"""Local discovery on real folder layouts holding tiny GGUFs: the HF cache (filled by a real download from the
fake hub, read back with scan_cache_dir), LM Studio's folders, Ollama's manifests + blobs, and user folders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import llama_cpp
import pytest

from moetui.paths import state_notices

from hub_server import fake_hub, write_split_proxy  # noqa: F401
from moetui.errors import ConfigError
from moetui.hub.cache import cached_model_path
from moetui.hub.discovery import (SOURCES, add_folder, discover_local, hf_cache_models, list_folders, lmstudio_models,
                                  ollama_models, remove_folder)
from moetui.hub.download import download_model

NOT_PIP = [s for s in SOURCES if s != "pip"]  # the optional real model, when installed, is listed too


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder and Ollama/HF locations inside it: the real user's models are never scanned."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("OLLAMA_MODELS", str(h / ".ollama" / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return h


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_hf_cache_lists_downloaded_models_and_skips_incomplete_splits(fake_hub, home, tiny_moe, tmp_path) -> None:
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    parts = write_split_proxy(tmp_path, "tiny-moe-Q8_0", mix="Q8_0", n_parts=2)
    for p in parts:
        fake_hub.add_file("me/split-GGUF", f"Q8_0/{p.name}", p)
    single = download_model("me/tiny-GGUF:Q4_K_M")
    split = download_model("me/split-GGUF:Q8_0")

    found = {m.name: m for m in hf_cache_models()}
    assert set(found) == {"me/tiny-GGUF/tiny-moe-Q4_K_M.gguf", f"me/split-GGUF/Q8_0/{parts[0].name}"}
    one = found["me/tiny-GGUF/tiny-moe-Q4_K_M.gguf"]
    assert (one.repo, one.quant, one.path, one.size_bytes) == ("me/tiny-GGUF", "Q4_K_M", single.path,
                                                                tiny_moe.stat().st_size)
    two = found[f"me/split-GGUF/Q8_0/{parts[0].name}"]
    assert two.quant == "Q8_0" and two.files == split.paths
    assert two.size_bytes == sum(p.stat().st_size for p in parts)

    # a split model missing a part cannot load: it is not listed, and a reference to it is not "cached"
    split.paths[1].unlink()
    assert [m.name for m in hf_cache_models()] == ["me/tiny-GGUF/tiny-moe-Q4_K_M.gguf"]
    assert cached_model_path("me/split-GGUF:Q8_0") is None
    assert cached_model_path("me/tiny-GGUF:Q4_K_M") == single.path


def test_lmstudio_folders(home, tiny_moe, tiny_draft, tmp_path) -> None:
    root = home / ".lmstudio" / "models"
    a = _copy(tiny_moe, root / "lmstudio-community" / "Qwen3-30B-A3B-GGUF" / "Qwen3-30B-A3B-Q4_K_M.gguf")
    _copy(tiny_draft, root / "lmstudio-community" / "Qwen3-30B-A3B-GGUF" / "mmproj-Qwen3-F16.gguf")  # a projector
    parts = write_split_proxy(tmp_path, "big-Q8_0", mix="Q8_0", n_parts=2)
    split_dir = home / ".cache" / "lm-studio" / "models" / "someone" / "big-GGUF"  # the legacy location
    for p in parts:
        _copy(p, split_dir / p.name)
    _copy(parts[0], split_dir / "half-Q8_0-00001-of-00002.gguf")  # half of another split model

    found = sorted((m.name, m.quant, m.size_bytes) for m in lmstudio_models())
    assert found == [
        ("lmstudio-community/Qwen3-30B-A3B-GGUF/Qwen3-30B-A3B-Q4_K_M.gguf", "Q4_K_M", a.stat().st_size),
        (f"someone/big-GGUF/{parts[0].name}", "Q8_0", sum(p.stat().st_size for p in parts)),
    ]
    assert all(m.source == "lmstudio" for m in lmstudio_models())


def _ollama_pull(root: Path, registry_path: str, gguf: Path, file_type: str) -> Path:
    """Lay a model out the way `ollama pull` leaves it: content-addressed blobs + a manifest naming them."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / f"sha256-{digest}").write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = put(json.dumps({"model_format": "gguf", "model_family": "qwen3", "file_type": file_type}).encode())
    model = put(gguf.read_bytes())
    template = put(b"{{ .Prompt }}")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.ollama.image.model", **model},
                           {"mediaType": "application/vnd.ollama.image.template", **template}]}
    mf = root / "manifests" / registry_path
    mf.parent.mkdir(parents=True, exist_ok=True)
    mf.write_text(json.dumps(manifest))
    return blobs / model["digest"].replace(":", "-")


def test_ollama_blobs_named_through_manifests(home, tiny_moe, tiny_draft) -> None:
    root = Path(os.environ["OLLAMA_MODELS"])
    moe = _ollama_pull(root, "registry.ollama.ai/library/qwen3/30b-a3b", tiny_moe, "Q4_K_M")
    hf = _ollama_pull(root, "hf.co/unsloth/Qwen3-0.6B-GGUF/Q8_0", tiny_draft, "Q8_0")
    broken = root / "manifests" / "registry.ollama.ai" / "library" / "gone" / "latest"  # blob never pulled
    broken.parent.mkdir(parents=True)
    broken.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                              "digest": "sha256:" + "0" * 64}]}))
    (root / "manifests" / "registry.ollama.ai" / "library" / "junk").mkdir()
    (root / "manifests" / "registry.ollama.ai" / "library" / "junk" / "latest").write_text("{not json")

    found = sorted((m.name, m.quant, m.path) for m in ollama_models())
    assert found == [("hf.co/unsloth/Qwen3-0.6B-GGUF:Q8_0", "Q8_0", hf), ("qwen3:30b-a3b", "Q4_K_M", moe)]
    llm = llama_cpp.Llama(str(moe), n_ctx=64, verbose=False)  # the blob, extension-less, is what loads
    assert llm.n_vocab() == 2048
    llm.close()


def test_user_folders_persist_atomically_and_are_scanned(home, tiny_moe, tmp_path) -> None:
    folder = tmp_path / "my models"
    _copy(tiny_moe, folder / "deep" / "x-Q4_K_M.gguf")
    assert list_folders() == []
    assert add_folder(folder) == folder.resolve()
    assert add_folder(str(folder) + "/") == folder.resolve()  # the same folder is kept once
    saved = Path(os.environ["MOETUI_DATA_DIR"]) / "folders.json"
    assert json.loads(saved.read_text()) == {"folders": [str(folder.resolve())]}
    assert not [p for p in saved.parent.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind
    assert [(m.source, m.name) for m in discover_local(NOT_PIP)] == [("folder", "deep/x-Q4_K_M.gguf")]

    assert remove_folder(folder) and not remove_folder(folder)
    assert list_folders() == [] and discover_local(NOT_PIP) == []
    with pytest.raises(ConfigError, match="no such folder"):
        add_folder(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not a folder"):
        add_folder(folder / "deep" / "x-Q4_K_M.gguf")
    saved.write_text("{broken")  # moved aside with a notice, never raised nor overwritten (issue 30)
    assert list_folders() == [] and not saved.exists()
    assert [p.read_text() for p in saved.parent.glob("folders.json.corrupt-*")] == ["{broken"]
    assert any("corrupt folder list" in n for n in state_notices())


def test_same_file_reached_twice_is_listed_once(fake_hub, home, tiny_moe) -> None:
    """An added folder that is the HF cache itself, or LM Studio's: each model once, from the richer source."""
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    cached = download_model("me/tiny-GGUF:Q4_K_M").path
    lm = _copy(tiny_moe, home / ".lmstudio" / "models" / "a" / "b" / "m-Q4_K_M.gguf")
    add_folder(Path(os.environ["HF_HUB_CACHE"]))
    add_folder(home / ".lmstudio" / "models")
    found = [(m.source, m.path) for m in discover_local(NOT_PIP)]
    assert found == [("hf-cache", cached), ("lmstudio", lm)]


def test_llama_cpp_cache_is_scanned_too(fake_hub, home, tiny_moe, tmp_path, monkeypatch) -> None:
    """llama.cpp -hf downloads into LLAMA_CACHE when set, in the hub layout: those models are found as well."""
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    llama_cache = tmp_path / "llama-cache"
    got = download_model("me/tiny-GGUF:Q4_K_M", cache=llama_cache)
    assert hf_cache_models() == []
    monkeypatch.setenv("LLAMA_CACHE", str(llama_cache))
    assert [(m.source, m.repo, m.path) for m in discover_local(NOT_PIP)] == [("hf-cache", "me/tiny-GGUF", got.path)]
