"""Where moetui keeps its files, and how it writes them without ever leaving half a file behind."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import platformdirs

from moetui.errors import ConfigError, MoetuiError

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
    return _own_folder(Path(env) if env else Path(platformdirs.user_data_dir(APP)), "data", "MOETUI_DATA_DIR")


def cache_dir() -> Path:
    env = os.environ.get("MOETUI_CACHE_DIR")
    return _own_folder(Path(env) if env else Path(platformdirs.user_cache_dir(APP)), "cache", "MOETUI_CACHE_DIR")


def machine_cache_dir() -> Path:
    """The cache shared by every run of moetui on this machine for this user (what `cache_dir()` is when
    MOETUI_CACHE_DIR is not set): for what is the same everywhere and large, made once (the real model)."""
    env = os.environ.get("MOETUI_MACHINE_CACHE_DIR")
    return _own_folder(Path(env) if env else Path(platformdirs.user_cache_dir(APP)), "cache", "MOETUI_MACHINE_CACHE_DIR")


def _own_folder(path: Path, what: str, env: str) -> Path:
    """The folder, made if missing; a file (or anything not a folder) in its place is a clear error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"moetui's {what} folder {path} is a file, not a folder: move it away, or set {env} "
                          "to another folder") from None
    # any other OSError (a read-only parent) stays one: callers that can do without the folder catch it
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


# ---- reading what moetui keeps: one validating loader for every JSON state file ----
MAX_STATE_BYTES = 16 << 20  # far above any file moetui writes (a profile is a few KB, a cache a few hundred)
MAX_STATE_DEPTH = 32  # moetui's own files nest 5 deep at most
_notices: list[str] = []


class StateError(ValueError):
    """A state file that is not what moetui wrote: the reason, for the notice."""


def state_notices() -> list[str]:
    """The notices of corrupt state files found (and moved aside) since the last call; cleared."""
    out = list(_notices)
    _notices.clear()
    return out


def _reject_constant(name: str) -> Any:
    raise StateError(f"{name} is not a number")


def _depth(obj: Any) -> int:
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_STATE_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def parse_state(raw: bytes, finite_only: bool = True) -> Any:
    """JSON as moetui writes it: UTF-8, finite numbers (NaN and Infinity refused unless not finite_only: a
    reader that checks its numbers itself), nested at most MAX_STATE_DEPTH; StateError otherwise."""
    if len(raw) > MAX_STATE_BYTES:
        raise StateError(f"{len(raw):,} bytes, more than moetui ever writes there")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant if finite_only else None)
    except RecursionError:
        raise StateError("nested too deep") from None
    except UnicodeDecodeError:
        raise StateError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise StateError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if _depth(data) > MAX_STATE_DEPTH:
        raise StateError("nested too deep")
    return data


def load_state(path: Path, what: str, check: Callable[[Any], Any] | None = None,
               on_notice: Callable[[str], None] | None = None, finite_only: bool = True) -> Any | None:
    """A JSON file moetui keeps (`what` names it for a person: "folder list", "bandwidth cache"), checked by
    `check` (types, ranges: it raises StateError or returns the value to use). Missing: None. Corrupt: moved
    aside to NAME.corrupt-TIME (never overwritten by the next save, never deleted), a notice recorded
    (state_notices(), and on_notice when given), None returned: the caller rebuilds it, and everything else
    keeps working."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a folder in its place (left alone: not moetui's to move), no permission
        _notice(f"{path}: the {what} cannot be read ({exc.strerror or exc}); carrying on without it", on_notice)
        return None
    try:
        data = parse_state(raw, finite_only)
        return check(data) if check is not None else data
    except (StateError, TypeError, KeyError, AttributeError, ValueError, OverflowError, MoetuiError) as exc:
        return _set_aside(Path(path), what, str(exc) or type(exc).__name__, on_notice)


def _notice(text: str, on_notice: Callable[[str], None] | None = None) -> None:
    """To the caller's own warnings when it keeps them (a ProfileStore), else to state_notices()."""
    if on_notice is not None:
        on_notice(text)
    elif text not in _notices:
        _notices.append(text)


def _set_aside(path: Path, what: str, why: str, on_notice: Callable[[str], None] | None) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{n}"), n + 1
    try:
        os.replace(path, aside)
        kept = f"moved aside to {aside.name}"
    except OSError as exc:
        kept = f"left as it is ({exc.strerror or exc})"
    _notice(f"{path}: corrupt {what} ({why[:120]}); {kept}, and moetui starts it afresh", on_notice)
    return None


def expect(ok: bool, why: str) -> None:
    """A state check: StateError(why) unless ok."""
    if not ok:
        raise StateError(why)


def finite(value: Any, lo: float, hi: float, name: str, optional: bool = False) -> float | None:
    """A number in a state file: finite, lo..hi (bools are not numbers); None allowed when optional."""
    if value is None and optional:
        return None
    expect(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} is not a number")
    expect(math.isfinite(value) and lo <= value <= hi, f"{name} = {str(value)[:30]} is out of range")
    return float(value)


def path_list(data: Any, key: str) -> list[Path]:
    """{key: [path, ...]}: paths as strings, no NUL bytes, none longer than a path can be."""
    expect(isinstance(data, dict), "not a JSON object")
    items = data.get(key, [])
    expect(isinstance(items, list), f"{key} is not a list")
    for p in items:
        expect(isinstance(p, str) and bool(p) and "\0" not in p and len(p) < 4096, f"{key} holds {str(p)[:40]!r}")
    return [Path(p) for p in items]
