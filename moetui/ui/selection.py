"""The model the user last selected, remembered in the user data dir so that `moetui` opens on it again
(and on the demo model right after `moetui demo`). Written atomically; a missing, damaged or stale entry
(the file was deleted) just means "nothing selected"."""

from __future__ import annotations

from pathlib import Path

from moetui.paths import atomic_write_json, data_dir, expect, load_state

FILE = "selection.json"


def _file() -> Path:
    return data_dir() / FILE


def remember_model(path: str) -> None:
    local = Path(path).expanduser()
    value = str(local.resolve()) if local.is_file() else str(path)  # a relative path: from anywhere next time
    try:
        atomic_write_json(_file(), {"model_path": value})
    except OSError:
        pass  # a read-only data dir costs only the memory of the selection


def _check(data: object) -> str | None:
    expect(isinstance(data, dict), "not a JSON object")
    value = data.get("model_path")  # type: ignore[union-attr]
    expect(value is None or (isinstance(value, str) and "\0" not in value and len(value) < 4096),
           f"model_path is {str(value)[:40]!r}")
    return value or None


def _remembered() -> str | None:
    try:
        return load_state(_file(), "remembered selection", _check)
    except OSError:
        return None


def _vanished(value: str) -> bool:
    path = Path(value).expanduser()
    try:
        return (path.is_absolute() or value.lower().endswith(".gguf")) and not path.is_file()
    except OSError:
        return True


def remembered_model() -> str | None:
    """The last selection, if it is still usable: a file that still exists, or a reference that is not a
    file path (a shape preset, REPO:QUANT)."""
    value = _remembered()
    return None if value is None or _vanished(value) else value


def remembered_missing() -> str | None:
    """The last selection when it was a file that is no longer there (moved, deleted): the app opens with
    nothing selected and says so, rather than failing to read it."""
    value = _remembered()
    return value if value is not None and _vanished(value) else None
