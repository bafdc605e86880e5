"""What the installed llama-cpp-python can do: its ggml backends and devices, GPU offload support.

Reads the ggml backend device API (ggml_backend_dev_count/get/name/description/memory/type,
ggml_backend_reg_count/get/name) through ctypes from the very libggml that llama_cpp loaded
(llama_cpp/lib), so the answer is the build's own view, including each device's free memory as
llama.cpp will see it when it places tensors.
"""

from __future__ import annotations

import ctypes
import importlib
import os
from pathlib import Path
from typing import Any

from moetui.hardware.rig import GPUInfo, LlamaBuildInfo, LlamaDevice

REINSTALL = {
    "nvidia": 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python',
    "amd": 'CMAKE_ARGS="-DGGML_HIPBLAS=on" pip install --force-reinstall --no-cache-dir llama-cpp-python  (or -DGGML_VULKAN=on)',
    "apple": 'CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall --no-cache-dir llama-cpp-python',
}
# which ggml backend names serve which GPU vendor
_VENDOR_BACKENDS = {"nvidia": {"CUDA", "Vulkan"}, "amd": {"ROCm", "HIP", "Vulkan"}, "apple": {"Metal", "MTL"}}

_DEV_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


def _bind(lib: Any) -> Any:
    vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "ggml_backend_reg_count": (sz, []),
        "ggml_backend_reg_get": (vp, [sz]),
        "ggml_backend_reg_name": (cp, [vp]),
        "ggml_backend_dev_count": (sz, []),
        "ggml_backend_dev_get": (vp, [sz]),
        "ggml_backend_dev_name": (cp, [vp]),
        "ggml_backend_dev_description": (cp, [vp]),
        "ggml_backend_dev_memory": (None, [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)]),
        "ggml_backend_dev_type": (ctypes.c_int, [vp]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)  # AttributeError when the symbol is missing: caller reports it
        fn.restype, fn.argtypes = res, args
    return lib


def _load_ggml(lib_dir: Path) -> Any:
    """The libggml llama_cpp already loaded (dlopen returns the same handle). libggml's dlsym
    also finds ggml-base's symbols, which it depends on."""
    try:
        ggml_mod = importlib.import_module("llama_cpp._ggml")
        return ggml_mod.libggml
    except Exception:
        pass
    for name in ("libggml.so", "libggml.dylib", "ggml.dll", "libggml.so.0"):
        p = lib_dir / name
        if p.exists():
            return ctypes.CDLL(str(p), mode=getattr(os, "RTLD_GLOBAL", 0))
    raise OSError(f"no libggml under {lib_dir}")


def _dec(b: bytes | None) -> str:
    return b.decode("utf-8", "replace") if b else ""


def read_llama_build(warnings: list[str] | None = None, *, query_memory: bool = True) -> LlamaBuildInfo:
    """Never raises; an absent or broken llama-cpp-python gives installed=False and a warning."""
    warnings = warnings if warnings is not None else []
    info = LlamaBuildInfo()
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except Exception as exc:
        warnings.append(f"llama.cpp: llama-cpp-python not importable ({type(exc).__name__}: {exc})")
        return info
    info.installed = True
    info.version = getattr(llama_cpp, "__version__", None)
    lib_dir = Path(llama_cpp.__file__ or ".").parent / "lib"
    info.lib_dir = str(lib_dir)
    try:
        # llama_backend_init is idempotent; it registers nothing new but makes sure ggml is set up.
        llama_cpp.llama_backend_init()
    except Exception:
        pass
    try:
        info.gpu_offload = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as exc:
        warnings.append(f"llama.cpp: llama_supports_gpu_offload failed ({exc})")
    try:
        si = llama_cpp.llama_print_system_info()
        info.system_info = _dec(si).strip(" |") if isinstance(si, bytes) else str(si)
    except Exception:
        pass
    try:
        lib = _bind(_load_ggml(lib_dir))
    except (OSError, AttributeError) as exc:
        warnings.append(f"llama.cpp: ggml device API unavailable ({exc}); backends unknown")
        return info
    try:
        if lib.ggml_backend_reg_count() == 0 and hasattr(lib, "ggml_backend_load_all_from_path"):
            # A GGML_BACKEND_DL build keeps backends as plugins until someone loads them.
            f = lib.ggml_backend_load_all_from_path
            f.restype, f.argtypes = None, [ctypes.c_char_p]
            f(str(lib_dir).encode())
        for i in range(lib.ggml_backend_reg_count()):
            name = _dec(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)))
            if name and name not in info.backends:
                info.backends.append(name)
        for i in range(lib.ggml_backend_dev_count()):
            dev = lib.ggml_backend_dev_get(i)
            d = LlamaDevice(
                name=_dec(lib.ggml_backend_dev_name(dev)),
                description=_dec(lib.ggml_backend_dev_description(dev)),
                type=_DEV_TYPES.get(int(lib.ggml_backend_dev_type(dev)), "unknown"),
            )
            if query_memory:
                free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
                d.memory_free_bytes, d.memory_total_bytes = int(free.value), int(total.value)
            info.devices.append(d)
    except Exception as exc:
        warnings.append(f"llama.cpp: enumerating ggml devices failed ({type(exc).__name__}: {exc})")
    return info


def advise(build: LlamaBuildInfo, gpus: list[GPUInfo]) -> str | None:
    """Plain advice when the machine has a GPU the installed build cannot use. None if all is well."""
    if not build.installed:
        return "llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36"
    for vendor in ("nvidia", "amd", "apple"):
        if any(g.vendor == vendor for g in gpus):
            usable = _VENDOR_BACKENDS[vendor] & set(build.backends)
            if not usable and not build.gpu_offload:
                names = ", ".join(sorted({g.name for g in gpus if g.vendor == vendor}))
                return (
                    f"This machine has {names}, but the installed llama-cpp-python is a CPU-only build "
                    f"(backends: {', '.join(build.backends) or 'none'}), so nothing can be offloaded to the GPU. "
                    f"Reinstall with GPU support:\n  {REINSTALL[vendor]}"
                )
    return None
