"""Reference rigs (presets/rigs/*.toml) and load_rig(), the one entry point for "which rig".

A preset is a Rig.to_dict() written as TOML (TOML has no null: absent keys take defaults), so
planning can answer "what if" for a machine the user does not have.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from moetui.errors import ConfigError
from moetui.hardware.detect import detect_rig
from moetui.hardware.fingerprint import fingerprint
from moetui.hardware.rig import Rig
from moetui.paths import presets_dir


def rigs_dir() -> Path:
    return presets_dir() / "rigs"


def list_presets() -> list[str]:
    d = rigs_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def load_preset(name: str) -> Rig:
    key = name.strip().lower().removesuffix(".toml")
    path = rigs_dir() / f"{key}.toml"
    if not path.is_file():
        avail = ", ".join(list_presets()) or "none"
        raise ConfigError(f"no reference rig named {name!r} (available: {avail}, or 'auto')")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"reference rig {path}: {exc}") from exc
    rig = Rig.from_dict(data)
    rig.source = "preset"
    _check(rig, path)
    if not rig.fingerprint:
        rig.fingerprint = fingerprint(rig)
    return rig


def _check(rig: Rig, path: Path) -> None:
    """A preset the sizing core would divide by zero on is a data bug: fail loudly, naming the file."""
    problems = []
    if rig.memory.total_bytes <= 0:
        problems.append("memory.total_bytes missing")
    if not rig.ram_bandwidth_gbs:
        problems.append("ram_bandwidth_gbs missing")
    for g in rig.gpus:
        if g.vram_total_bytes <= 0 or not g.mem_bandwidth_gbs:
            problems.append(f"gpu {g.name!r}: vram_total_bytes and mem_bandwidth_gbs are required")
        if not g.unified_memory and not g.pcie_bandwidth_gbs:
            problems.append(f"gpu {g.name!r}: pcie_bandwidth_gbs required for a discrete GPU")
    if problems:
        raise ConfigError(f"reference rig {path.name}: " + "; ".join(problems))


def load_rig(name_or_auto: str = "auto", **detect_kwargs: Any) -> Rig:
    """'auto' (or '') detects this machine (detect_rig kwargs pass through); else a preset name."""
    if not name_or_auto or name_or_auto.strip().lower() in ("auto", "this", "local"):
        return detect_rig(**detect_kwargs)
    return load_preset(name_or_auto)


# ---- TOML writer for this schema (stdlib has a reader only) -------------------------------------


def _tval(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_tval(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def rig_to_toml(rig: Rig) -> str:
    """Write a rig as a preset (None values are dropped; TOML has no null)."""
    d = rig.to_dict()
    d.pop("bandwidth_probe", None)
    d.pop("warnings", None)
    d["source"] = "preset"
    lines: list[str] = []

    def emit_table(prefix: str, table: dict[str, Any], array: bool = False) -> None:
        scalars = {k: v for k, v in table.items() if v is not None and not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        if prefix:
            lines.append(f"\n[[{prefix}]]" if array else f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_tval(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                emit_table(f"{prefix}.{k}" if prefix else k, v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    emit_table(f"{prefix}.{k}" if prefix else k, item, array=True)

    emit_table("", d)
    return "\n".join(lines).lstrip() + "\n"
