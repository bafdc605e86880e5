"""Where moetui keeps its files, and how it writes them without ever leaving half a file behind."""

from __future__ import annotations

import json
import os
import tempfile
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
