"""GGUF models already on this machine: the HF cache, LM Studio, Ollama, and folders the user added.

Only names, paths and sizes are gathered here (a directory walk, no file is opened except to check an
Ollama blob's magic), so listing stays fast; inspect a LocalModel's path when it is picked.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from moetui.errors import ConfigError
from moetui.hub.connection import hf_cache_dir
from moetui.hub.listing import SPLIT_RE, quant_label
from moetui.paths import atomic_write_json, data_dir

SOURCES = ("hf-cache", "lmstudio", "ollama", "folder")
MAX_DEPTH = 8
_SKIP = ("mmproj", "imatrix")


@dataclass
class LocalModel:
    path: Path  # what llama.cpp loads (first part of a split model)
    name: str
    source: str  # one of SOURCES
    size_bytes: int  # all parts
    quant: str = ""
    repo: str | None = None  # hub repo for hf-cache models
    files: list[Path] = field(default_factory=list)


# --- user folders -------------------------------------------------------------------------------------

def _folders_file() -> Path:
    return data_dir() / "folders.json"


def list_folders() -> list[Path]:
    f = _folders_file()
    if not f.exists():
        return []
    try:
        data = json.loads(f.read_text())
        return [Path(p) for p in data.get("folders", [])]
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{f}: unreadable folder list ({exc}); fix or delete it") from exc


def add_folder(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{p}: no such folder")
    if not p.is_dir():
        raise ConfigError(f"{p}: not a folder")
    p = p.resolve()
    folders = list_folders()
    if p not in folders:
        folders.append(p)
        atomic_write_json(_folders_file(), {"folders": [str(x) for x in folders]})
    return p


def remove_folder(path: str | os.PathLike[str]) -> bool:
    p = Path(path).expanduser().resolve()
    folders = list_folders()
    if p not in folders:
        return False
    atomic_write_json(_folders_file(), {"folders": [str(x) for x in folders if x != p]})
    return True


# --- walking folders ----------------------------------------------------------------------------------

def _walk_ggufs(root: Path) -> Iterator[Path]:
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda e: None):
        if len(Path(dirpath).parts) - root_depth >= MAX_DEPTH:
            dirnames[:] = []
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.lower().endswith(".gguf") and not any(s in name.lower() for s in _SKIP):
                yield Path(dirpath) / name


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def models_in_files(paths: Iterable[Path], source: str, root: Path | None = None) -> list[LocalModel]:
    """Group split parts: a -00001-of-0000N file stands for the model; other parts only add their size."""
    paths = sorted(paths)
    by_stem: dict[tuple[Path, str, str], list[Path]] = {}
    singles: list[Path] = []
    for p in paths:
        m = SPLIT_RE.match(p.name)
        if m:
            by_stem.setdefault((p.parent, m.group("stem"), m.group("count")), []).append(p)
        else:
            singles.append(p)
    out = []
    for p in singles:
        out.append(LocalModel(p, _display(p, root), source, _size(p), quant_label(p.name), files=[p]))
    for (_, _, count), parts in by_stem.items():
        parts.sort()
        if len(parts) != int(count) or not SPLIT_RE.match(parts[0].name).group("no") == "00001":  # type: ignore[union-attr]
            continue  # an incomplete split model cannot load
        out.append(LocalModel(parts[0], _display(parts[0], root), source, sum(_size(x) for x in parts),
                              quant_label(parts[0].name), files=parts))
    return out


def _display(p: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    return p.name


# --- sources ------------------------------------------------------------------------------------------

def hf_cache_models(cache: Path | None = None) -> list[LocalModel]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache = cache or hf_cache_dir()
    if not cache.is_dir():
        return []
    try:
        info = scan_cache_dir(cache)
    except (CacheNotFound, OSError):
        return []
    out: list[LocalModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        # newest revision first, so a file present in two snapshots is listed once, from the newest
        seen: set[str] = set()
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            files = [f.file_path for f in rev.files if f.file_name.lower().endswith(".gguf")
                     and not any(s in f.file_name.lower() for s in _SKIP)]
            snap = rev.snapshot_path
            for m in models_in_files(files, "hf-cache", snap):
                key = m.path.relative_to(snap).as_posix()
                if key in seen:
                    continue
                seen.add(key)
                m.repo = repo.repo_id
                m.name = f"{repo.repo_id}/{key}"
                out.append(m)
    return out


def lmstudio_dirs() -> list[Path]:
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def lmstudio_models() -> list[LocalModel]:
    out: list[LocalModel] = []
    for root in lmstudio_dirs():
        if root.is_dir():
            out += models_in_files(_walk_ggufs(root), "lmstudio", root)
    return out


def ollama_dir() -> Path:
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def ollama_models() -> list[LocalModel]:
    """Manifests (manifests/REGISTRY/NAMESPACE/NAME/TAG) name the blobs; the model layer is the GGUF."""
    root = ollama_dir()
    manifests = root / "manifests"
    if not manifests.is_dir():
        return []
    out = []
    for mf in sorted(p for p in manifests.rglob("*") if p.is_file()):
        rel = mf.relative_to(manifests).parts
        if len(rel) != 4:
            continue
        registry, namespace, name, tag = rel
        try:
            layers = json.loads(mf.read_text()).get("layers", [])
        except (OSError, ValueError, AttributeError):
            continue
        for layer in layers:
            if layer.get("mediaType") != "application/vnd.ollama.image.model":
                continue
            digest = str(layer.get("digest", ""))
            blob = root / "blobs" / digest.replace(":", "-")
            if not _is_gguf(blob):
                continue
            label = f"{name}:{tag}" if (registry, namespace) == ("registry.ollama.ai", "library") \
                else f"{registry}/{namespace}/{name}:{tag}"
            out.append(LocalModel(blob, label, "ollama", _size(blob), "", files=[blob]))
    return out


def _is_gguf(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def folder_models() -> list[LocalModel]:
    out: list[LocalModel] = []
    for root in list_folders():
        if root.is_dir():
            out += models_in_files(_walk_ggufs(root), "folder", root)
    return out


def discover_local(sources: Iterable[str] = SOURCES) -> list[LocalModel]:
    """Every local GGUF model, one entry per model; the same file reached twice is listed once."""
    finders = {"hf-cache": hf_cache_models, "lmstudio": lmstudio_models, "ollama": ollama_models,
               "folder": folder_models}
    out: list[LocalModel] = []
    seen: set[Path] = set()
    for src in sources:
        for m in finders[src]():
            try:
                real = m.path.resolve()
            except OSError:
                real = m.path
            if real in seen:
                continue
            seen.add(real)
            out.append(m)
    return out
