"""The package as a user installs it: a wheel built from a clean copy of the sources, installed into a fresh
virtual environment outside the source tree, run from an empty working directory with an empty HOME and no
PYTHONPATH, so nothing can come from the checkout. `moetui plan`, `moetui models`, `moetui demo --no-app`
and the app in a real terminal (tmux) must work from there, and everything they write must land in the
user data and cache dirs moetui.paths names (under that HOME), nowhere else.

The virtual environment sees the system site-packages (`--system-site-packages`), so the dependencies
already installed are used as they are (llama-cpp-python is not rebuilt) and the wheel goes in with
`--no-deps`; the wheel itself is what is under test. pipx gets the same wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_ui_tmux import Tmux

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# what a moetui run may write under HOME: its data and cache dirs (platformdirs on Linux)
ALLOWED_UNDER_HOME = (".local/share/moetui", ".cache/moetui")


def _sources(dest: Path) -> Path:
    """The tracked files only (what a clone or an sdist has), so no build/ or egg-info of the checkout
    leaks into the wheel."""
    try:
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files or files == [""]:  # not a git checkout: copy the tree without build leftovers
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info",
                                                                  "__pycache__", ".pytest_cache", ".venv"))
        return dest
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    return dest


def _user_env(home: Path) -> dict[str, str]:
    """The environment a user's shell would give: HOME, PATH, the terminal; none of the test session's
    moetui or Python overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MOETUI_DATA", "MOETUI_CACHE", "XDG_", "PYTHON")) and k != "VIRTUAL_ENV"}
    env["HOME"] = str(home)
    env["HF_HUB_OFFLINE"] = "1"  # no hub here: the commands must say so and go on
    # probed once by the session (conftest): a second probe would only cost time
    env["MOETUI_REPACK"] = os.environ.get("MOETUI_REPACK", "on")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel-build")
    src = _sources(base / "src")
    out = base / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("moetui-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("wheel-venv")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    home, cwd = base / "home", base / "cwd"
    home.mkdir()
    cwd.mkdir()
    pip_home = base / "pip-home"  # what pip (and tools it starts) leave in a HOME is not moetui's doing
    pip_home.mkdir()
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300, env=_user_env(pip_home))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"moetui": venv / "bin" / "moetui", "python": venv / "bin" / "python", "home": home, "cwd": cwd}


def _moetui(inst: dict[str, Path], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(inst["moetui"]), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=inst["cwd"], env=_user_env(inst["home"]), stdin=subprocess.DEVNULL)


def _written_under(home: Path) -> list[str]:
    return sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())


def test_the_wheel_carries_the_data_and_imports_from_the_venv(installed: dict[str, Path]) -> None:
    code = ("import moetui, moetui.paths as p; print(moetui.__file__); print(p.presets_dir()); "
            "print(p.assets_dir())")
    proc = subprocess.run([str(installed["python"]), "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=installed["cwd"], env=_user_env(installed["home"]))
    assert proc.returncode == 0, proc.stderr
    module, presets, assets = (Path(line) for line in proc.stdout.split())
    venv = installed["python"].parents[1]
    assert venv in module.parents and venv in presets.parents and venv in assets.parents
    assert (presets / "models.toml").is_file() and (presets / "shapes" / "qwen3-30b-a3b.toml").is_file()
    assert sorted(p.name for p in (presets / "rigs").glob("*.toml")) == sorted(
        p.name for p in (REPO / "presets" / "rigs").glob("*.toml"))
    assert (assets / "moetui.tcss").is_file() and (assets / "flows.tcss").is_file()


def test_installed_cli_plans_lists_and_runs_the_demo(installed: dict[str, Path]) -> None:
    plan = _moetui(installed, "plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64")
    assert plan.returncode == 0, plan.stderr
    assert "tok/s" in plan.stdout and "RTX 4090" in plan.stdout

    models = _moetui(installed, "models")
    assert models.returncode == 0, models.stderr
    assert "Qwen3-30B-A3B" in models.stdout and "catalog" in models.stdout.lower()

    demo = _moetui(installed, "demo", "--no-app", "--no-real")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "bench: llama.cpp alone" in demo.stdout and "`moetui` opens the app with the demo model selected" in demo.stdout

    written = _written_under(installed["home"])
    assert written, "the demo wrote nothing: where did its model go?"
    stray = [f for f in written if not f.startswith(ALLOWED_UNDER_HOME)]
    assert not stray, f"written outside moetui's data and cache dirs: {stray}"
    assert any(f.startswith(".local/share/moetui/models/demo-") for f in written)
    assert not list(installed["cwd"].iterdir()), "a command wrote into the working directory"


def _in_terminal(inst: dict[str, Path], *args: str) -> Tmux:
    """The installed `moetui ARGS` in a real terminal, with the user environment of _user_env."""
    env = _user_env(inst["home"])
    assignments = " ".join(f"{k}={v}" for k, v in env.items() if k in ("HOME", "HF_HUB_OFFLINE", "MOETUI_REPACK"))
    return Tmux(["sh", "-c", f"cd {inst['cwd']} && exec env -u PYTHONPATH -u MOETUI_DATA_DIR -u MOETUI_CACHE_DIR "
                 f"-u XDG_DATA_HOME -u XDG_CACHE_HOME {assignments} {inst['moetui']} {' '.join(args)}"])


def test_installed_demo_opens_the_app_on_its_model_and_moetui_reopens_it(installed: dict[str, Path]) -> None:
    """In a terminal `moetui demo` ends in the app with the demo model selected and listed in Models;
    later, plain `moetui` (no argument) opens on it again, styled (a missing stylesheet stops the app)."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed")
    for args in (("demo", "--no-real"), ()):
        t = _in_terminal(installed, *args)
        try:
            t.wait_for("Best config for my rig")  # bounded generously (test_ui_tmux.READY_S): a busy machine is slow
            t.wait_for("Qwen3-30B-A3B (tiny)")  # the demo model, selected at start
            t.keys("m")
            t.wait_for("demo-qwen…_M.gguf  selected")  # listed by the Models screen (the name shortened at 80 columns)
            t.keys("q")
            assert t.wait_closed(), "q did not quit the app"
        finally:
            t.kill()


def test_pipx_installs_the_wheel(wheel: Path, tmp_path: Path) -> None:
    """The way people install a terminal tool (pipx is in the test extras). pipx brings its shared pip up to
    date from the package index on a first install: that much network the test needs."""
    pytest.importorskip("pipx", reason="pipx not installed (pip install -e '.[test]' installs it)")
    home = tmp_path / "home"
    home.mkdir()
    env = {**_user_env(home), "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
           "PIPX_MAN_DIR": str(tmp_path / "man")}
    proc = subprocess.run([sys.executable, "-m", "pipx", "install", "--system-site-packages", "--pip-args=--no-deps",
                           str(wheel)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([str(tmp_path / "bin" / "moetui"), "plan", "qwen3-30b-a3b", "--rig", "rtx4090-ddr5-64"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0 and "tok/s" in run.stdout, run.stderr
