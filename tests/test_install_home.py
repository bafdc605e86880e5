"""A test session writes nothing into the real HOME: a few tests that write caches (the repack probe at
configure time, the RAM bandwidth cache, the demo model, local-model discovery, a worker log) run in a
nested pytest with HOME pointed at an empty folder and none of the session's moetui dirs in the
environment, so its conftest must set them up itself. The one thing a session may write there is the
llama.cpp tools build, in the shared folder tests/conftest.py names (not written by these tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/test_hub_discovery.py",
    "tests/test_hardware_bandwidth.py::test_cache_roundtrip_and_reuse",
    "tests/test_hardware_bandwidth.py::test_corrupt_cache_file_is_ignored",
    "tests/test_demo_app.py::test_demo_no_app_remembers_the_demo_model",
]
# conftest.shared_llama_tools_dir(), explicitly named; the real model, joined once per machine (moetui.paths)
ALLOWED = (".cache/moetui/llama-tools-", ".cache/moetui/models/")


def test_a_test_session_leaves_home_empty(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MOETUI_", "XDG_", "PYTEST_")) and k != "HF_HUB_OFFLINE"}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    stray = [f for f in written if not f.startswith(ALLOWED)]
    assert not stray, f"the test session wrote into HOME: {stray}"


def test_the_repack_probe_and_the_tools_build_default_to_the_cache_dir(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The two writers that used to go to ~/.cache/moetui directly: a real probe (a child runs llama.cpp
    on a tiny model; told the build has AMX so that it runs here) caches its verdict under cache_dir(),
    and the llama.cpp tools folder defaults there too."""
    from moetui.export.llama_tools import installed_llama_cpp_python_version, tools_dir
    from moetui.hardware.repack import ENV, repack_safe
    from moetui.paths import cache_dir

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("MOETUI_LLAMA_TOOLS_DIR", raising=False)
    info = "CPU : AVX2 = 1 | AMX_INT8 = 1 |"
    first = repack_safe(system_info=info, lib_dir=str(tmp_path))
    assert first.probed and (cache_dir() / "repack-probe.json").is_file()
    assert repack_safe(system_info=info, lib_dir=str(tmp_path)).cached
    assert tools_dir() == cache_dir() / f"llama-tools-{installed_llama_cpp_python_version()}"
    assert not list(home.iterdir())
