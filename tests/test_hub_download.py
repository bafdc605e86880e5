"""Downloads into the standard HF cache: progress, resume after a cut or a cancel, sha256 checks, disk check."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hub_server import big_vocab_model, fake_hub, sha256_of, write_split_proxy  # noqa: F401
from moetui.errors import HubError
from moetui.hub.download import DownloadCancelled, DownloadProgress, download_model


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file() or p.is_symlink())


def test_download_lands_in_the_hf_cache_other_tools_read(fake_hub, tiny_moe, tmp_path) -> None:
    from huggingface_hub import hf_hub_download, scan_cache_dir

    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    events: list[DownloadProgress] = []
    result = download_model("me/tiny-GGUF:Q4_K_M", progress=events.append, progress_interval_s=0)
    cache = tmp_path / "hf-cache"
    assert result.path.read_bytes() == tiny_moe.read_bytes()
    assert result.path.is_symlink() and result.verified == ["tiny-moe-Q4_K_M.gguf"]
    # huggingface_hub itself finds the file where we put it, without the network
    same = hf_hub_download("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", cache_dir=cache, local_files_only=True)
    assert Path(same) == result.path
    repos = {r.repo_id: r for r in scan_cache_dir(cache).repos}
    assert repos["me/tiny-GGUF"].size_on_disk == tiny_moe.stat().st_size
    # progress: bytes only go up, the last event says done with everything
    done = [e.bytes_done for e in events]
    assert done == sorted(done) and events[-1].phase == "done" and events[-1].bytes_done == tiny_moe.stat().st_size
    assert any(e.phase == "download" and e.speed_bps > 0 and e.eta_s is not None for e in events)
    assert any(e.phase == "verify" for e in events)
    # a second run finds it cached and transfers nothing
    n_gets = sum(1 for e in fake_hub.log if e[1].startswith("/cdn/"))
    again = download_model("me/tiny-GGUF:Q4_K_M")
    assert again.bytes_cached == tiny_moe.stat().st_size and again.bytes_transferred == 0
    assert sum(1 for e in fake_hub.log if e[1].startswith("/cdn/")) == n_gets


def test_cut_connection_resumes_with_range(fake_hub, big_vocab_model) -> None:
    """The socket closes 25 MB into the file; huggingface_hub's http_get retries from the bytes it had
    written (whole 10 MB chunks) with a Range request, within the same download call."""
    from huggingface_hub import constants

    model, name, cut = big_vocab_model, big_vocab_model.name, 25_000_000
    fake_hub.add_file("me/big-GGUF", name, model)
    fake_hub.cut_after[name] = cut
    result = download_model("me/big-GGUF:Q4_K_M")
    gets = [rng for method, path, rng in fake_hub.log if method == "GET" and path.startswith("/cdn/")]
    kept = cut // constants.DOWNLOAD_CHUNK_SIZE * constants.DOWNLOAD_CHUNK_SIZE
    assert gets == [None, f"bytes={kept}-"]  # the second attempt asked only for what was missing
    assert fake_hub.bytes_sent[name] == model.stat().st_size + (cut - kept)
    assert sha256_of(result.path) == sha256_of(model)


def test_cancelled_download_resumes_in_a_later_run(fake_hub, big_vocab_model, tmp_path) -> None:
    model, name = big_vocab_model, big_vocab_model.name
    fake_hub.add_file("me/big-GGUF", name, model)
    cancel = threading.Event()

    def stop_midway(p: DownloadProgress) -> None:
        if p.file_bytes_done > 15_000_000:
            cancel.set()

    with pytest.raises(DownloadCancelled, match="run it again to resume"):
        download_model("me/big-GGUF:Q4_K_M", progress=stop_midway, cancel=cancel, progress_interval_s=0)
    cache = tmp_path / "hf-cache"
    partial = list(cache.rglob("*.incomplete"))
    assert len(partial) == 1 and 15_000_000 < partial[0].stat().st_size < model.stat().st_size
    kept = partial[0].stat().st_size
    assert not list(cache.rglob("snapshots/*/*.gguf"))  # nothing looks finished

    result = download_model("me/big-GGUF:Q4_K_M")
    assert result.bytes_resumed == kept and result.bytes_transferred == model.stat().st_size - kept
    last_get = [rng for m, p, rng in fake_hub.log if m == "GET" and p.startswith("/cdn/")][-1]
    assert last_get == f"bytes={kept}-"
    assert sha256_of(result.path) == sha256_of(model)
    assert not list(cache.rglob("*.incomplete"))


def test_wrong_checksum_is_rejected_and_nothing_is_left(fake_hub, tiny_moe, tmp_path) -> None:
    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    fake_hub.wrong_sha.add("tiny-moe-Q4_K_M.gguf")
    with pytest.raises(HubError, match="sha256 mismatch.*deleted"):
        download_model("me/tiny-GGUF:Q4_K_M")
    cache = tmp_path / "hf-cache"
    leftovers = [f for f in _cache_files(cache) if "/blobs/" in f or "/snapshots/" in f]
    assert leftovers == []
    assert fake_hub.bytes_sent["tiny-moe-Q4_K_M.gguf"] == tiny_moe.stat().st_size  # it really was downloaded


def test_disk_space_is_checked_before_the_first_byte(fake_hub, tiny_moe, monkeypatch) -> None:
    import moetui.hub.download as download

    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    monkeypatch.setattr(download, "DISK_MARGIN", 1 << 60)  # "needs" more than any real disk has free
    with pytest.raises(HubError, match="not enough disk space"):
        download_model("me/tiny-GGUF:Q4_K_M")
    assert not any(p.startswith("/cdn/") for _, p, _ in fake_hub.log)


def test_split_model_downloads_every_part_and_loads(fake_hub, tmp_path) -> None:
    import llama_cpp

    parts = write_split_proxy(tmp_path, "tiny-moe-Q4_K_M", n_parts=2)
    for p in parts:
        fake_hub.add_file("me/split-GGUF", f"Q4_K_M/{p.name}", p)
    events: list[DownloadProgress] = []
    result = download_model("me/split-GGUF:Q4_K_M", progress=events.append, progress_interval_s=0)
    assert [p.name for p in result.paths] == [p.name for p in parts]
    assert result.size_bytes == sum(p.stat().st_size for p in parts) and len(result.verified) == 2
    assert {e.file_index for e in events if e.phase == "download"} == {0, 1}
    llm = llama_cpp.Llama(str(result.path), n_ctx=64, verbose=False)  # llama.cpp finds part 2 beside part 1
    assert llm.n_vocab() == 2048
    llm.close()


def test_offline_download_is_refused_clearly(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="^offline: downloading"):
        download_model("unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF:Q4_K_M")


def test_a_crash_after_the_last_byte_is_finished_without_a_transfer(fake_hub, tiny_moe, tmp_path) -> None:
    """All bytes in blobs/<sha>.incomplete (killed before the rename): the next run only verifies. Same size but
    wrong bytes: the hash catches it and the file is deleted, not linked."""
    from hub_server import sha256_of

    fake_hub.add_file("me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf", tiny_moe)
    sha = sha256_of(tiny_moe)
    partial = tmp_path / "hf-cache" / "models--me--tiny-GGUF" / "blobs" / f"{sha}.incomplete"
    partial.parent.mkdir(parents=True)
    data = tiny_moe.read_bytes()
    partial.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(HubError, match="sha256 mismatch"):
        download_model("me/tiny-GGUF:Q4_K_M")
    assert not partial.exists() and not list((tmp_path / "hf-cache").rglob("snapshots/*/*"))

    partial.write_bytes(data)
    result = download_model("me/tiny-GGUF:Q4_K_M")
    assert (result.bytes_resumed, result.bytes_transferred, result.verified) == (len(data), 0, ["tiny-moe-Q4_K_M.gguf"])
    assert not any(path.startswith("/cdn/") and method == "GET" for method, path, _ in fake_hub.log)
    assert result.path.read_bytes() == data
