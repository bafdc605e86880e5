"""GGUF models already on this machine: moetui's own (the demo proxies in the data dir, the optional real
model from PyPI), the HF cache, LM Studio, Ollama, and the folders and files the user added (both lists are
kept in the data dir, written atomically, so they are there again after a restart; an added file that has
since been moved or deleted is listed with missing=True rather than dropped or raised on).

Only names, paths and sizes are gathered here (a directory walk, no file is opened except to check an
Ollama blob's magic), so listing stays fast; inspect a LocalModel's path when it is picked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from moetui.errors import ConfigError
from moetui.hub.connection import hf_cache_dir
from moetui.hub.listing import SPLIT_RE, quant_label
from moetui.paths import atomic_write_json, data_dir, load_state, parse_state, path_list
from moetui.hub.real_model import DISPLAY_NAME, real_model_path

SOURCES = ("moetui", "pip", "hf-cache", "lmstudio", "ollama", "folder", "added")
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
    missing: bool = False  # an added file that is no longer there (moved, deleted, its disk unmounted)


# --- user folders -------------------------------------------------------------------------------------

def _folders_file() -> Path:
    return data_dir() / "folders.json"


def list_folders() -> list[Path]:
    """The folders the user added. A damaged list is moved aside with a notice (paths.load_state) and reads
    as empty: every other local model is still listed."""
    return load_state(_folders_file(), "folder list", lambda d: path_list(d, "folders")) or []


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


# --- user files ---------------------------------------------------------------------------------------

def _files_file() -> Path:
    return data_dir() / "added_files.json"


def list_files() -> list[Path]:
    """The GGUF files the user added one by one (Models screen's Add), in the order added; those that have
    vanished since are still listed (the caller says they are missing). A damaged list is moved aside with
    a notice and reads as empty: it only costs the memory of what was added."""
    return load_state(_files_file(), "list of added files", lambda d: path_list(d, "files")) or []


def add_file(path: str | os.PathLike[str]) -> Path:
    """Remember a GGUF file to list from now on (absolute, resolved). Raises ConfigError if it is not a file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    p = p.resolve()
    files = list_files()
    if p not in files:
        files.append(p)
        atomic_write_json(_files_file(), {"files": [str(x) for x in files]})
    return p


def remove_file(path: str | os.PathLike[str]) -> bool:
    p = Path(path).expanduser()
    p = p.resolve() if p.exists() else p.absolute()
    files = list_files()
    if p not in files:
        return False
    atomic_write_json(_files_file(), {"files": [str(x) for x in files if x != p]})
    return True


def added_models() -> list[LocalModel]:
    out: list[LocalModel] = []
    for p in list_files():
        try:
            present = p.is_file()
        except OSError:
            present = False
        if present:
            out.append(LocalModel(p, p.name, "added", _size(p), quant_label(p.name), files=[p]))
        else:
            out.append(LocalModel(p, p.name, "added", 0, quant_label(p.name), missing=True))
    return out


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


def _is_dir(p: Path) -> bool:
    """is_dir() that says False for a folder we may not enter (another user's Ollama service folder)."""
    try:
        return p.is_dir()
    except OSError:
        return False


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

def hf_cache_dirs() -> list[Path]:
    """The HF hub cache, and LLAMA_CACHE when set: llama.cpp's -hf downloads go there first, in the same
    models--OWNER--NAME layout (common/hf-cache.cpp)."""
    dirs = [hf_cache_dir()]
    llama = os.environ.get("LLAMA_CACHE")
    if llama and Path(llama).expanduser() not in dirs:
        dirs.append(Path(llama).expanduser())
    return dirs


def hf_cache_models(cache: Path | None = None) -> list[LocalModel]:
    """Models in one hub-layout cache (default: every one hf_cache_dirs names)."""
    if cache is None:
        return [m for c in hf_cache_dirs() for m in hf_cache_models(c)]
    # huggingface_hub: loaded when this runs, not at start-up
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    if not _is_dir(cache):
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
        if _is_dir(root):
            out += models_in_files(_walk_ggufs(root), "lmstudio", root)
    return out


def ollama_dirs() -> list[Path]:
    """OLLAMA_MODELS when set (Ollama itself then looks nowhere else), else the per-user folder and the one the
    Linux install script's system service uses."""
    env = os.environ.get("OLLAMA_MODELS")
    if env:
        return [Path(env).expanduser()]
    return [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def ollama_models() -> list[LocalModel]:
    out: list[LocalModel] = []
    for root in ollama_dirs():
        out += ollama_models_in(root)
    return out


def ollama_models_in(root: Path) -> list[LocalModel]:
    """Manifests (manifests/REGISTRY/NAMESPACE/NAME/TAG) name the blobs (blobs/sha256-HEX): the
    application/vnd.ollama.image.model layer is the GGUF; the small JSON config blob says its file_type."""
    manifests = root / "manifests"
    if not _is_dir(manifests):
        return []
    out = []
    try:
        found = sorted(p for p in manifests.rglob("*") if p.is_file())
    except OSError:
        return []
    for mf in found:
        rel = mf.relative_to(manifests).parts
        if len(rel) != 4:
            continue
        registry, namespace, name, tag = rel
        try:
            manifest = parse_state(mf.read_bytes())  # Ollama's file: bounded in size and depth, never moved
            layers = manifest.get("layers", [])
        except (OSError, ValueError, AttributeError):
            continue  # a manifest being written, or not Ollama's: skip it, list the rest
        for layer in layers:
            if not isinstance(layer, dict) or layer.get("mediaType") != "application/vnd.ollama.image.model":
                continue
            blob = _ollama_blob(root, layer.get("digest"))
            if blob is None or not _is_gguf(blob):
                continue  # not pulled completely, or an older non-GGUF format
            label = f"{name}:{tag}" if (registry, namespace) == ("registry.ollama.ai", "library") \
                else f"{registry}/{namespace}/{name}:{tag}"
            out.append(LocalModel(blob, label, "ollama", _size(blob), _ollama_file_type(root, manifest), files=[blob]))
    return out


def _ollama_blob(root: Path, digest: object) -> Path | None:
    algo, _, hexdigest = str(digest or "").partition(":")
    if not algo or not hexdigest.isalnum():
        return None  # never build a path from anything but "sha256:HEX"
    return root / "blobs" / f"{algo}-{hexdigest}"


def _ollama_file_type(root: Path, manifest: dict) -> str:
    config = manifest.get("config")
    blob = _ollama_blob(root, config.get("digest")) if isinstance(config, dict) else None
    if blob is None or _size(blob) > 1 << 20:  # the config is a few hundred bytes of JSON
        return ""
    try:
        return str(parse_state(blob.read_bytes()).get("file_type") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _is_gguf(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def folder_models() -> list[LocalModel]:
    out: list[LocalModel] = []
    for root in list_folders():
        if _is_dir(root):
            out += models_in_files(_walk_ggufs(root), "folder", root)
    return out


def moetui_models_dir() -> Path:
    """Where moetui writes the models it makes itself (`moetui demo`'s proxy)."""
    return data_dir() / "models"


def moetui_models() -> list[LocalModel]:
    root = moetui_models_dir()
    return models_in_files(_walk_ggufs(root), "moetui", root) if _is_dir(root) else []


def pip_models() -> list[LocalModel]:
    """The real small model of `pip install 'moetui[real]'`, when installed (joined from its parts once)."""
    path = real_model_path()
    return [] if path is None else [LocalModel(path, DISPLAY_NAME, "pip", _size(path), "Q4_K_M", files=[path])]


def discover_local(sources: Iterable[str] = SOURCES) -> list[LocalModel]:
    """Every local GGUF model, one entry per model; the same file reached twice is listed once."""
    finders = {"moetui": moetui_models, "pip": pip_models, "hf-cache": hf_cache_models,
               "lmstudio": lmstudio_models, "ollama": ollama_models, "folder": folder_models,
               "added": added_models}
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
