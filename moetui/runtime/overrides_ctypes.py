"""Tensor buffer overrides (llama.cpp's `-ot pattern=BUFT`) for llama-cpp-python, through ctypes.

llama-cpp-python 0.3.36 declares `llama_model_params.tensor_buft_overrides` as a bare pointer and never
sets it, and `Llama()` builds its own model params. So, inside the worker process only, `load_hooks()`
wraps `llama_cpp.llama_model_load_from_file` for the duration of one `Llama(...)` call and writes into
the params, just before the load: a NULL-terminated array of {pattern, buffer type} (buffer types
resolved exactly as llama.cpp's own -ot parser does, by buffer type name over ggml's devices), and the
load mode; it also wraps `llama_init_from_model` to set context fields `Llama()` cannot express (flash
attention "auto"). The array and its pattern bytes must outlive the model: llama.cpp keeps the pointer,
so `OverrideArray` is held by the worker for as long as the model is loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import ctypes
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from moetui.config import TensorOverride
from moetui.config.llama_flags import FLASH_ATTN_IDS as FLASH_ATTN  # llama.cpp's enums: one table
from moetui.config.llama_flags import LOAD_MODE_IDS as LOAD_MODES
from moetui.errors import ConfigError
from moetui.hardware.llama_build import llama_lib_dir

GGML_BACKEND_DEVICE_TYPE_CPU = 0


class BuftOverride(ctypes.Structure):
    """struct llama_model_tensor_buft_override { const char * pattern; ggml_backend_buffer_type_t buft; }"""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


_ggml_lib: ctypes.CDLL | None = None


def loaded_library(stem: str) -> str:
    """The file of `stem` (e.g. "libggml") that this process has mapped. The wheel ships libggml.so,
    libggml.so.0 and libggml.so.0.x as three copies, not links, and libllama loads the .so.0 one: opening
    libggml.so would give a second ggml with its own device registry, where registered RPC servers are
    invisible to model loads."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                if os.path.basename(path).startswith(stem + ".so"):
                    return path
    except OSError:
        pass  # no /proc (macOS): the dynamic linker resolves by the same name libllama asked for
    return os.path.join(llama_lib_dir(), stem + ".so")


def ggml() -> ctypes.CDLL:
    """The libggml that llama-cpp-python loaded (same file, so the same device registry)."""
    global _ggml_lib
    if _ggml_lib is None:
        # llama-cpp-python loads libllama (and with it libggml) first, so dlopen below returns that same
        # library and its device registry; heavy, so only the worker process does this
        importlib.import_module("llama_cpp")

        lib = ctypes.CDLL(loaded_library("libggml"))
        base = ctypes.CDLL(loaded_library("libggml-base"))
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
        lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
        lib.ggml_backend_dev_by_name.argtypes = [ctypes.c_char_p]
        lib.ggml_backend_dev_by_name.restype = ctypes.c_void_p
        lib.ggml_backend_dev_buffer_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_buffer_type.restype = ctypes.c_void_p
        base.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
        base.ggml_backend_buft_name.restype = ctypes.c_char_p
        lib.buft_name = base.ggml_backend_buft_name  # type: ignore[attr-defined]
        _ggml_lib = lib
    return _ggml_lib


def buffer_types() -> dict[str, int]:
    """Buffer type name -> handle, one per ggml device: what `-ot` accepts ("CPU", "CUDA0", ...)."""
    lib = ggml()
    out: dict[str, int] = {}
    for i in range(lib.ggml_backend_dev_count()):
        buft = lib.ggml_backend_dev_buffer_type(lib.ggml_backend_dev_get(i))
        if buft:
            out[lib.buft_name(buft).decode()] = buft  # type: ignore[attr-defined]
    return out


def resolve_buffer_type(device: str) -> int:
    known = buffer_types()
    if device in known:
        return known[device]
    if device.upper() == "CPU":  # the CPU device's buffer type is named "CPU"; be lenient on case
        buft = ggml().ggml_backend_dev_buffer_type(ggml().ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU))
        if buft:
            return buft
    raise ConfigError(
        f"unknown buffer type {device!r} in a tensor override; this llama.cpp build has: {', '.join(sorted(known)) or 'none'}"
    )


@dataclass
class OverrideArray:
    """A NULL-terminated llama_model_tensor_buft_override[] plus the bytes its pointers point into."""

    array: Any
    patterns: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> int:
        return ctypes.addressof(self.array)


def build_override_array(overrides: list[TensorOverride]) -> OverrideArray | None:
    if not overrides:
        return None
    patterns = [o.pattern.encode() for o in overrides]
    arr = (BuftOverride * (len(overrides) + 1))()  # zero-initialised: the last entry is the terminator
    for i, (o, pat) in enumerate(zip(overrides, patterns)):
        arr[i].pattern = pat
        arr[i].buft = resolve_buffer_type(o.device)
    return OverrideArray(arr, patterns)


@contextlib.contextmanager
def load_hooks(
    overrides: OverrideArray | None,
    load_mode: str,
    adjust_context: Callable[[Any], None] | None = None,
    repack: bool = True,
    no_host: bool = False,
    seen: dict[str, Any] | None = None,
) -> Iterator[None]:
    """While active, every model load gets `overrides`, `load_mode`, `repack` (use_extra_bufts) and
    `no_host`, and every new context is passed through `adjust_context(params)` first; `seen` gets the
    model params llama.cpp was given. Restores the originals on exit. Worker-process only."""
    from llama_cpp import llama_cpp as L  # noqa: PLC0415

    orig_load = L.llama_model_load_from_file
    orig_init = L.llama_init_from_model

    def load(path_model: bytes, params: Any) -> Any:
        if overrides is not None:
            params.tensor_buft_overrides = overrides.address
        params.load_mode = LOAD_MODES[load_mode]
        params.use_extra_bufts = bool(repack)
        params.no_host = bool(no_host)
        if seen is not None:
            seen.update(n_gpu_layers=params.n_gpu_layers, use_extra_bufts=bool(params.use_extra_bufts),
                        no_host=bool(params.no_host), load_mode=int(params.load_mode))
        return orig_load(path_model, params)

    def init(model: Any, params: Any) -> Any:
        if adjust_context is not None:
            adjust_context(params)
        return orig_init(model, params)

    L.llama_model_load_from_file = load
    L.llama_init_from_model = init
    try:
        yield
    finally:
        L.llama_model_load_from_file = orig_load
        L.llama_init_from_model = orig_init
