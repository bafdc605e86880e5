"""Issue 19: memory that cannot be had. With load_mode none the weights go into RAM llama.cpp allocates
(pinned where a GPU is present); where that allocation fails the worker loads with mmap instead and says
so. Shown on the CPU with a real RAM limit on the worker process (RLIMIT_DATA, which counts anonymous
allocations but not the file-backed mmap)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from moetui.config import RunConfig
from moetui.runtime.client import ModelWorker, collect
from moetui.runtime.load_fallback import HEADROOM_ENV

HEADROOM = 48 * 2**20


@pytest.fixture(scope="module")
def heavy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-shaped MoE whose experts weigh ~110 MB: more than the headroom the worker is given."""
    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape, scaled

    path = tmp_path_factory.mktemp("heavy") / "heavy-Q4_K_M.gguf"
    write_proxy(dataclasses.replace(scaled(load_shape("qwen3-30b-a3b"), "tiny"), n_expert=64, expert_ffn=1024), path)
    assert path.stat().st_size > 2.2 * HEADROOM
    return path


def _cfg(model: Path, mode: str) -> RunConfig:
    return RunConfig(model_path=str(model), n_ctx=256, n_threads=1, n_threads_batch=1, load_mode=mode, repack=False)


def test_load_mode_none_without_the_ram_falls_back_to_mmap(heavy_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HEADROOM_ENV, str(HEADROOM))
    with ModelWorker(stall_timeout=120) as w:
        info = w.start(_cfg(heavy_model, "none"))
        assert info.load_mode_fallback and "loaded with mmap instead" in info.load_mode_fallback
        assert "allocate" in info.load_mode_fallback  # llama.cpp's own words for what failed
        assert w.config.load_mode == "mmap"
        assert collect(w.generate("the", max_tokens=4)).text is not None
        log = info.log_path.read_text(errors="replace")
    assert "allocate" in log


def test_the_limit_is_real_and_mmap_fits_under_it(heavy_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: under the same limit mmap loads without a fallback; without the limit none loads as asked."""
    monkeypatch.setenv(HEADROOM_ENV, str(HEADROOM))
    with ModelWorker(stall_timeout=120) as w:
        assert w.start(_cfg(heavy_model, "mmap")).load_mode_fallback is None
    monkeypatch.delenv(HEADROOM_ENV)
    with ModelWorker(stall_timeout=120) as w:
        assert w.start(_cfg(heavy_model, "none")).load_mode_fallback is None
        assert w.config.load_mode == "none"


def test_moetui_run_says_it_fell_back(heavy_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(HEADROOM_ENV, str(HEADROOM))
    _cfg(heavy_model, "none").save(tmp_path / "cfg.json")  # repack off: repacked copies are RAM of their own
    r = subprocess.run([sys.executable, "-m", "moetui", "run", str(heavy_model), "--config", str(tmp_path / "cfg.json"),
                        "-p", "the", "-n", "4"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "loaded with mmap instead" in r.stderr
