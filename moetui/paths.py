"""Where moetui keeps its files, and how it writes them without ever leaving half a file behind."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import platformdirs

APP = "moetui"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent  # the source checkout, in a source or editable layout


def bundled_dir(name: str) -> Path:
    """A data folder the package reads at run time (`presets`, `assets`): inside the package in an
    installed wheel (moetui/<name>, mapped there by pyproject.toml), at the top of the repository in a
    source checkout or an editable install. The one place that knows both layouts."""
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else REPO_DIR / name


def presets_dir() -> Path:
    """The data folder (model shapes, catalog, reference rigs). MOETUI_PRESETS overrides it."""
    env = os.environ.get("MOETUI_PRESETS")
    return Path(env) if env else bundled_dir("presets")


def assets_dir() -> Path:
    """The stylesheets (moetui.tcss, flows.tcss)."""
    return bundled_dir("assets")


def data_dir() -> Path:
    """User data: demo model, tuned profiles. MOETUI_DATA_DIR overrides it (tests use that)."""
    env = os.environ.get("MOETUI_DATA_DIR")
    path = Path(env) if env else Path(platformdirs.user_data_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    env = os.environ.get("MOETUI_CACHE_DIR")
    path = Path(env) if env else Path(platformdirs.user_cache_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


ORPHAN_AGE_S = 3600.0  # a temp file this old is an orphan even if its pid was reused since
_TMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temps(folder: Path) -> int:
    """Delete the temp files of atomic writes whose writer died (SIGKILL, power cut) before its rename:
    the writer's pid is in the name, so a write in progress in another process is left alone.
    Returns how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for e in entries:
        m = _TMP_RE.match(e.name)
        if not m:
            continue
        try:
            pid, age = int(m.group("pid")), now - e.stat(follow_symlinks=False).st_mtime
            if pid == os.getpid() or (_pid_alive(pid) and age < ORPHAN_AGE_S):
                continue
            os.unlink(e.path)
            removed += 1
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see the old or the new file.
    Temp files left by writers that were killed mid-write are removed on the next write to the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
