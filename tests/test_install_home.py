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
ALLOWED = (".cache/moetui/llama-tools-",)  # conftest.shared_llama_tools_dir(), explicitly named


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
