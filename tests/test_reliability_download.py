"""Issue 19: downloads against the fake hub, cut or cancelled at random points and resumed, a file that
changes on the server between attempts, a wrong checksum, a disk that fills up mid-way: the HF cache
never holds a partial file under the final name, and what it finally holds is the server's file."""

from __future__ import annotations

import random
import subprocess
import threading
from pathlib import Path

import pytest

from hub_server import big_vocab_model, fake_hub, sha256_of  # noqa: F401
from moetui.errors import HubError
from moetui.hub.download import DownloadCancelled, DownloadProgress, download_model
from tests.reliability_disk import small_tmpfs

SEED = 19


def _final_files(cache: Path) -> list[Path]:
    """What other tools would take as finished: blobs without .incomplete and snapshot links."""
    return [p for p in cache.rglob("*") if (p.is_file() or p.is_symlink()) and ("/blobs/" in str(p) or "/snapshots/" in str(p))
            and not p.name.endswith(".incomplete")]


def test_cut_at_random_points_resumes_to_the_same_bytes(fake_hub, tiny_moe, tmp_path) -> None:
    rng = random.Random(SEED)
    size, want = tiny_moe.stat().st_size, sha256_of(tiny_moe)
    for i in range(6):
        name = f"tiny-{i}-Q4_K_M.gguf"
        fake_hub.add_file(f"me/cut{i}-GGUF", name, tiny_moe)
        fake_hub.cut_after[name] = rng.randrange(1, size)
        result = download_model(f"me/cut{i}-GGUF:Q4_K_M", cache=tmp_path / f"c{i}")
        assert sha256_of(result.path) == want
        assert not list((tmp_path / f"c{i}").rglob("*.incomplete"))


def test_cancelled_at_random_points_then_resumed(fake_hub, big_vocab_model, tmp_path) -> None:
    rng = random.Random(SEED)
    size, want = big_vocab_model.stat().st_size, sha256_of(big_vocab_model)
    fake_hub.add_file("me/big-GGUF", big_vocab_model.name, big_vocab_model)
    cache = tmp_path / "c"
    attempts = 0
    while True:
        attempts += 1
        cancel, at = threading.Event(), rng.randrange(1, size)

        def stop(p: DownloadProgress) -> None:
            if p.file_bytes_done >= at and p.phase == "download":
                cancel.set()

        try:
            result = download_model("me/big-GGUF:Q4_K_M", progress=stop, cancel=cancel, cache=cache, progress_interval_s=0)
            break
        except DownloadCancelled:
            assert _final_files(cache) == []  # nothing under the final name while it is partial
        assert attempts < 30
    assert attempts >= 2 and sha256_of(result.path) == want


def test_a_file_that_changes_on_the_server_between_attempts(fake_hub, big_vocab_model, tmp_path) -> None:
    import dataclasses

    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape, scaled

    cache = tmp_path / "c"
    fake_hub.add_file("me/big-GGUF", "big-Q4_K_M.gguf", big_vocab_model)
    cancel = threading.Event()
    with pytest.raises(DownloadCancelled):
        download_model("me/big-GGUF:Q4_K_M", cancel=cancel, cache=cache, progress_interval_s=0,
                       progress=lambda p: p.file_bytes_done > 15_000_000 and cancel.set())
    # the author re-uploads: same name, other bytes (another seed), a new commit
    other = tmp_path / "other.gguf"
    write_proxy(dataclasses.replace(scaled(load_shape("qwen3-30b-a3b"), "tiny"), n_vocab=151_936), other, seed=7)
    assert sha256_of(other) != sha256_of(big_vocab_model)
    fake_hub.add_file("me/big-GGUF", "big-Q4_K_M.gguf", other)
    result = download_model("me/big-GGUF:Q4_K_M", cache=cache)
    assert result.bytes_resumed == 0  # the old bytes were never spliced into the new file
    assert sha256_of(result.path) == sha256_of(other)


def test_wrong_checksum_after_a_resume_leaves_nothing_final(fake_hub, big_vocab_model, tmp_path) -> None:
    fake_hub.add_file("me/big-GGUF", big_vocab_model.name, big_vocab_model)
    fake_hub.wrong_sha.add(big_vocab_model.name)
    fake_hub.cut_after[big_vocab_model.name] = 12_345_678
    with pytest.raises(HubError, match="sha256 mismatch"):
        download_model("me/big-GGUF:Q4_K_M", cache=tmp_path / "c")
    assert _final_files(tmp_path / "c") == [] and not list((tmp_path / "c").rglob("*.incomplete"))


def test_disk_full_mid_way_then_resumed(fake_hub, tiny_moe, tmp_path, monkeypatch) -> None:
    import moetui.hub.download as download

    with small_tmpfs(tmp_path / "disk", 2048) as disk:
        if disk is None:
            pytest.skip("no tmpfs can be mounted here")
        fake_hub.add_file("me/tiny-GGUF", "tiny-Q4_K_M.gguf", tiny_moe)
        # the check before the first byte passed; then something else filled the disk
        monkeypatch.setattr(download, "_free_bytes", lambda _p: 1 << 40)
        with pytest.raises(HubError, match="No space left"):
            download_model("me/tiny-GGUF:Q4_K_M", cache=disk / "hf")
        assert _final_files(disk / "hf") == []
        kept = sum(p.stat().st_size for p in (disk / "hf").rglob("*.incomplete"))
        assert kept > 0
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)  # space is freed
        result = download_model("me/tiny-GGUF:Q4_K_M", cache=disk / "hf")
        assert result.bytes_resumed == kept
        assert sha256_of(result.path) == sha256_of(tiny_moe)
