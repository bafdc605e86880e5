"""load_mode "none" (weights read into RAM llama.cpp allocates, pinned where a GPU is present) needs
the whole CPU share of the model as allocatable memory; where that allocation fails the worker loads
again with mmap (pages from the file, which the kernel can drop and re-read) and says so, instead of
failing the load. Worker-process only.

MOETUI_WORKER_DATA_HEADROOM=BYTES caps the worker's private writable memory (RLIMIT_DATA) at what it
uses just before loading plus BYTES: a RAM-starved machine on demand, for tests and for users who want a
hard cap on the worker. File-backed mmaps do not count against RLIMIT_DATA, anonymous allocations do.
"""

from __future__ import annotations

import os
import re
from typing import Callable, TypeVar
import resource

T = TypeVar("T")
HEADROOM_ENV = "MOETUI_WORKER_DATA_HEADROOM"
_ALLOC_FAILED = re.compile(r"failed to allocate|unable to allocate|cannot allocate|out of memory", re.IGNORECASE)


def _vm_data_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def apply_data_headroom() -> int | None:
    """Apply MOETUI_WORKER_DATA_HEADROOM if set; the limit set, in bytes."""
    raw = os.environ.get(HEADROOM_ENV)
    if not raw:
        return None

    used = _vm_data_bytes()
    if used is None:
        return None
    limit = used + int(raw)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    return limit


def load_with_fallback(load_mode: str, load: Callable[[str], T], log_since_start: Callable[[], str]) -> tuple[T, str | None]:
    """load(mode) -> model. With load_mode "none", an allocation failure retries with "mmap". Returns the
    model and, when it fell back, the sentence that says so."""
    try:
        return load(load_mode), None
    except Exception as exc:  # llama-cpp-python raises ValueError("Failed to load model from file")
        log = log_since_start()
        if load_mode != "none" or not _ALLOC_FAILED.search(log + str(exc)):
            raise
        why = next((ln.strip() for ln in log.splitlines() if _ALLOC_FAILED.search(ln)), str(exc))
    model = load("mmap")
    return model, (f"load_mode none could not allocate the weights in RAM ({why[:160]}); "
                   "loaded with mmap instead (pages come from the file)")
