"""Shared fixtures: tiny synthetic MoE models made by moetui itself (no downloads), built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moetui.model.proxy import write_proxy
from moetui.model.shapes import list_shapes, load_shape, scaled

TINY_SHAPES = [s for s in list_shapes() if s not in ("qwen3-235b-a22b", "gpt-oss-120b")]


SESSION_USER_DIRS: Path | None = None


def shared_llama_tools_dir() -> Path:
    """The one folder, shared by every test session, where llama.cpp's tools are built (about 600 MB and
    minutes of build): the very folder moetui itself uses by default (~/.cache/moetui/llama-tools-<ver>
    on Linux), so tools built once by a user, a lead or an earlier run are found and not built twice.
    Named here explicitly because tests give cache_dir() a fresh temp folder each; the only thing a test
    session may write under the real HOME (tests/test_install_home.py holds it to that)."""
    import platformdirs

    from moetui.export.llama_tools import installed_llama_cpp_python_version

    return Path(platformdirs.user_cache_dir("moetui")) / f"llama-tools-{installed_llama_cpp_python_version()}"


def pytest_configure(config: pytest.Config) -> None:
    """Before anything runs (collection included): user data and cache go to a session temp folder, never
    the real HOME; llama.cpp's tools to the named shared folder. Then, where llama.cpp's repacked CPU
    kernels crash (an AMX-advertising VM), run every llama.cpp of the session with --no-repack, as moetui
    itself does: probed once per session, told to child processes by env."""
    import tempfile

    global SESSION_USER_DIRS
    SESSION_USER_DIRS = Path(tempfile.mkdtemp(prefix="moetui-test-user-"))
    os.environ["MOETUI_DATA_DIR"] = str(SESSION_USER_DIRS / "data")
    os.environ["MOETUI_CACHE_DIR"] = str(SESSION_USER_DIRS / "cache")
    os.environ.setdefault("MOETUI_LLAMA_TOOLS_DIR", str(shared_llama_tools_dir()))

    from moetui.hardware.repack import ENV, make_llama_cpp_safe

    os.environ[ENV] = "on" if make_llama_cpp_safe().safe else "off"


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    if SESSION_USER_DIRS is not None:
        shutil.rmtree(SESSION_USER_DIRS, ignore_errors=True)


def repack_ok() -> bool:
    """Whether configs the tests write for llama.cpp's own binaries may leave repacking on."""
    return os.environ.get("MOETUI_REPACK", "on") == "on"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _tiny(model_dir: Path, shape: str, mix: str = "Q4_K_M") -> Path:
    path = model_dir / f"{shape}-tiny-{mix}.gguf"
    if not path.exists():
        write_proxy(scaled(load_shape(shape), "tiny"), path, mix)
    return path


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path):
    """Factory: tiny_model('qwen3-30b-a3b', 'Q4_K_M') -> path of a tiny proxy (cached for the session)."""
    return lambda shape="qwen3-30b-a3b", mix="Q4_K_M": _tiny(model_dir, shape, mix)


@pytest.fixture(scope="session")
def tiny_moe(model_dir: Path) -> Path:
    """The workhorse: a tiny Qwen3-30B-A3B-shaped proxy (4 layers, 8 experts, 2 used, vocab 2048)."""
    return _tiny(model_dir, "qwen3-30b-a3b")


@pytest.fixture(scope="session")
def tiny_draft(model_dir: Path) -> Path:
    """A smaller dense proxy with the same vocabulary as tiny_moe, for speculative decoding."""
    return _tiny(model_dir, "qwen3-0.6b", "Q8_0")


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_dirs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The same for module- and session-scoped fixtures, which run before any per-test patch."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("user-dirs")
    mp.setenv("MOETUI_DATA_DIR", str(base / "data"))
    mp.setenv("MOETUI_CACHE_DIR", str(base / "cache"))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real user's data/cache dirs from tests."""
    monkeypatch.setenv("MOETUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOETUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))


@pytest.fixture
def anyio_backend() -> str:
    """The Pilot tests run on anyio's pytest plugin with the asyncio backend."""
    return "asyncio"


@pytest.fixture(scope="session")
def cpu_rig():  # type: ignore[no-untyped-def]
    """This machine, detected once (no bandwidth probe: the UI flow tests do not plan by speed)."""
    from moetui.hardware import detect_rig

    return detect_rig(measure_bandwidth=False)
