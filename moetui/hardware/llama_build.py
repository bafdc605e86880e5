"""What the installed llama-cpp-python can do: its ggml backends and devices, GPU offload support.

Reads the ggml backend device API (ggml_backend_dev_count/get/name/description/memory/type,
ggml_backend_reg_count/get/name) through ctypes from the very libggml that llama_cpp loaded, so the
answer is the build's own view, including each device's free memory as llama.cpp will see it when it
places tensors. That libggml is found in this process's memory map; else in LLAMA_CPP_LIB_PATH (which
llama-cpp-python honours for libllama, e.g. a CUDA build kept outside the package), else in the
package's lib/ folder.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from moetui.hardware.rig import GPUInfo, LlamaBuildInfo, LlamaDevice

LIB_PATH_ENV = "LLAMA_CPP_LIB_PATH"

# The version pyproject pins: moetui.runtime reaches into this release's internals (ctypes structs, _ctx).
SUPPORTED_VERSION = "0.3.36"
_REINSTALL = {
    "nvidia": 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python=={v}',
    "amd": 'CMAKE_ARGS="-DGGML_HIPBLAS=on" pip install --force-reinstall --no-cache-dir llama-cpp-python=={v}'
           "  (or -DGGML_VULKAN=on)",
    "apple": 'CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall --no-cache-dir llama-cpp-python=={v}',
}


def reinstall_command(vendor: str, version: str | None) -> str:
    """The GPU rebuild, pinned: an unpinned `pip install llama-cpp-python` fetches the newest release,
    whose internals the runtime does not match. Pin what is installed (what the user has been running);
    the supported version when that is unknown."""
    return _REINSTALL[vendor].format(v=version or SUPPORTED_VERSION)
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


def lib_dir_for(llama_cpp: Any) -> Path:
    """Where llama-cpp-python loads libllama from: LLAMA_CPP_LIB_PATH when set (its own override,
    used for a CUDA build kept outside the package), else the package's lib/ folder."""
    override = os.environ.get(LIB_PATH_ENV)
    if override:
        return Path(override)
    return Path(getattr(llama_cpp, "__file__", None) or ".").parent / "lib"


def llama_lib_dir() -> str:
    """lib_dir_for the installed llama_cpp, as a string; imports llama_cpp only when LLAMA_CPP_LIB_PATH
    is not set."""
    override = os.environ.get(LIB_PATH_ENV)
    if override:
        return override
    import llama_cpp  # noqa: PLC0415  (heavy: only when asked)

    return str(lib_dir_for(llama_cpp))


_GGML_NAME = re.compile(r"^(lib)?ggml\.(so(\.\d+)*|dylib|dll)$")  # libggml itself, not ggml-base/-cpu/-cuda


def loaded_ggml_paths(maps: str | None = None) -> list[Path]:
    """libggml files mapped into this process (Linux /proc/self/maps), in load order. The truth about
    which build llama_cpp loaded, whatever env var, rpath or LD_LIBRARY_PATH picked it."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return []
    out: list[Path] = []
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            p = Path(parts[5].strip())
            if _GGML_NAME.match(p.name) and p not in out:
                out.append(p)
    return out


def _load_ggml(lib_dir: Path, *, package_lib: bool) -> tuple[Any, Path]:
    """The libggml that llama_cpp already loaded (dlopen of the same file returns the same handle, so
    the backend registry we read is the one llama.cpp uses). libggml's dlsym also finds ggml-base's
    symbols, which it depends on. Never a second, different libggml: with LLAMA_CPP_LIB_PATH set,
    llama_cpp._ggml would load the package's lib/ copy (it ignores the variable)."""
    for p in loaded_ggml_paths():
        return ctypes.CDLL(str(p), mode=getattr(os, "RTLD_GLOBAL", 0)), p
    for name in ("libggml.so", "libggml.so.0", "libggml.dylib", "ggml.dll"):
        p = lib_dir / name
        if p.exists():
            return ctypes.CDLL(str(p), mode=getattr(os, "RTLD_GLOBAL", 0)), p
    if package_lib:
        try:
            ggml_mod = importlib.import_module("llama_cpp._ggml")
            return ggml_mod.libggml, Path(ggml_mod.libggml_base_path)
        except Exception:
            pass
    where = f"{LIB_PATH_ENV}={lib_dir}" if not package_lib else str(lib_dir)
    raise OSError(f"no libggml loaded or under {where}")


def _dec(b: bytes | None) -> str:
    return b.decode("utf-8", "replace") if b else ""


def read_llama_build(warnings: list[str] | None = None, *, query_memory: bool = True) -> LlamaBuildInfo:
    """Never raises; an absent or broken llama-cpp-python gives installed=False and a warning.

    When llama_cpp is not imported yet, its libllama is opened directly (the same file, found the same
    way llama_cpp finds it) instead of importing the package: `import llama_cpp` also imports its chat
    formats, jinja2 and numpy, about 0.4-0.5 s of a `moetui detect` run."""
    warnings = warnings if warnings is not None else []
    info = LlamaBuildInfo()
    if "llama_cpp" not in sys.modules and sys.platform != "win32":
        light = _open_libllama(info, warnings)
        if light is not None:
            with _quiet_ggml_log(light):
                _read_into(info, light, warnings, query_memory)
            return info
        if not info.installed:
            return info
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except Exception as exc:
        warnings.append(f"llama.cpp: llama-cpp-python not importable ({type(exc).__name__}: {exc})")
        return info
    info.installed = True
    info.version = getattr(llama_cpp, "__version__", None)
    info.lib_dir = str(lib_dir_for(llama_cpp))
    # Backend registration logs at INFO through llama-cpp-python's logger, which prints everything by
    # default ("ggml_cuda_init: found 1 CUDA devices ..." on stderr): quiet it while we look; errors still show.
    py_logger = logging.getLogger("llama-cpp-python")
    level = py_logger.level
    py_logger.setLevel(max(level, logging.ERROR))
    try:
        _read_into(info, llama_cpp, warnings, query_memory)
    finally:
        py_logger.setLevel(level)
    return info


_LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_GGML_LOG_LEVEL_ERROR = 3


class _LibLlama:
    """The three libllama calls _read_into needs, straight from the shared library."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        lib.llama_supports_gpu_offload.restype, lib.llama_supports_gpu_offload.argtypes = ctypes.c_bool, []
        lib.llama_print_system_info.restype, lib.llama_print_system_info.argtypes = ctypes.c_char_p, []
        lib.llama_backend_init.restype, lib.llama_backend_init.argtypes = None, []
        lib.llama_log_set.restype, lib.llama_log_set.argtypes = None, [_LOG_CB, ctypes.c_void_p]

    def llama_backend_init(self) -> None:
        self.lib.llama_backend_init()

    def llama_supports_gpu_offload(self) -> bool:
        return bool(self.lib.llama_supports_gpu_offload())

    def llama_print_system_info(self) -> bytes:
        return self.lib.llama_print_system_info() or b""


def _package_version(pkg_dir: Path) -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except Exception:  # a package copied without its dist-info (as on the GPU box): read __init__.py
        try:
            m = re.search(r'__version__\s*=\s*["\']([^"\']+)', (pkg_dir / "__init__.py").read_text())
            return m.group(1) if m else None
        except OSError:
            return None


def _open_libllama(info: LlamaBuildInfo, warnings: list[str]) -> _LibLlama | None:
    """libllama as llama_cpp would load it (LLAMA_CPP_LIB_PATH, else the package's lib/), without
    importing the package. None with installed=False when there is no llama-cpp-python; None with
    installed=True when the light way fails and the caller should import llama_cpp instead."""
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        warnings.append("llama.cpp: llama-cpp-python not importable (not installed)")
        return None
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    lib_dir = Path(os.environ[LIB_PATH_ENV]) if os.environ.get(LIB_PATH_ENV) else pkg_dir / "lib"
    names = ["libllama.so"] + (["libllama.dylib"] if sys.platform == "darwin" else [])
    path = next((lib_dir / n for n in names if (lib_dir / n).exists()), None)
    if path is None:
        # llama_cpp's own import fails the same way: the package cannot be used at all
        warnings.append(f"llama.cpp: llama-cpp-python not importable (no libllama in {lib_dir})")
        return None
    info.installed, info.version, info.lib_dir = True, _package_version(pkg_dir), str(lib_dir)
    try:
        return _LibLlama(ctypes.CDLL(str(path)))
    except (OSError, AttributeError):
        return None  # let the real import try, and report what it says


class _quiet_ggml_log:
    """Route ggml/llama logs to a filter that keeps errors only, then back to the default (stderr) logger,
    which is what llama_cpp finds and replaces with its own when it is imported later."""

    def __init__(self, api: _LibLlama) -> None:
        self.api = api

        def cb(level: int, text: bytes | None, _user: Any) -> None:
            if level == _GGML_LOG_LEVEL_ERROR and text:
                sys.stderr.write(text.decode("utf-8", "replace"))

        self.cb = _LOG_CB(cb)  # kept referenced while installed

    def __enter__(self) -> None:
        self.api.lib.llama_log_set(self.cb, None)

    def __exit__(self, *exc: object) -> None:
        self.api.lib.llama_log_set(_LOG_CB(), None)  # NULL: ggml's default logger


def _read_into(info: LlamaBuildInfo, llama_cpp: Any, warnings: list[str], query_memory: bool) -> None:
    """llama_cpp: the llama_cpp module or a _LibLlama. info.installed/version/lib_dir are already set."""
    lib_dir = Path(info.lib_dir or ".")
    package_lib = not os.environ.get(LIB_PATH_ENV)
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
        raw, ggml_path = _load_ggml(lib_dir, package_lib=package_lib)
        lib = _bind(raw)
        # the folder the build really came from (an rpath or LD_LIBRARY_PATH may differ from lib_dir)
        info.lib_dir = str(ggml_path.parent) if ggml_path.is_file() else str(lib_dir)
    except (OSError, AttributeError) as exc:
        info.backends = backends_from_system_info(info.system_info)
        known = f"backends from its system info: {', '.join(info.backends)}" if info.backends else "backends unknown"
        warnings.append(f"llama.cpp: ggml device API unavailable ({exc}); {known}, devices and their free memory unknown")
        return
    try:
        if lib.ggml_backend_reg_count() == 0 and hasattr(lib, "ggml_backend_load_all_from_path"):
            # A GGML_BACKEND_DL build keeps backends as plugins until someone loads them.
            f = lib.ggml_backend_load_all_from_path
            f.restype, f.argtypes = None, [ctypes.c_char_p]
            f(info.lib_dir.encode())
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


def backends_from_system_info(text: str | None) -> list[str]:
    """Backend names from llama_print_system_info() ("CUDA : ARCHS = 900 | ... | CPU : AVX = 1 | ..."):
    each registered backend that has features writes "NAME : " before them. A fallback for when the
    ggml device API cannot be reached; it misses backends without features and gives no devices."""
    out: list[str] = []
    for seg in (text or "").split("|"):
        m = re.match(r"\s*([A-Za-z][\w-]*)\s+:\s", seg)
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def advise(build: LlamaBuildInfo, gpus: list[GPUInfo]) -> str | None:
    """Plain advice when the machine has a GPU the installed build cannot use. None if all is well."""
    if not build.installed:
        return f"llama-cpp-python is not installed: pip install llama-cpp-python=={SUPPORTED_VERSION}"
    gpu_devices = [d for d in build.devices if d.type in ("gpu", "igpu")]
    for vendor in ("nvidia", "amd", "apple"):
        if not any(g.vendor == vendor for g in gpus):
            continue
        names = ", ".join(sorted({g.name for g in gpus if g.vendor == vendor}))
        usable = _VENDOR_BACKENDS[vendor] & set(build.backends)
        if not usable and not build.gpu_offload:
            return (
                f"This machine has {names}, but the installed llama-cpp-python is a CPU-only build "
                f"(backends: {', '.join(build.backends) or 'unknown'}), so nothing can be offloaded to the GPU. "
                f"Reinstall with GPU support:\n  {reinstall_command(vendor, build.version)}"
            )
        if usable and build.devices and not gpu_devices:
            # The GPU backend is compiled in but found no device: typically a driver older than the
            # CUDA runtime the build was made with, or CUDA_VISIBLE_DEVICES / MIG hiding the card.
            hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
            hint = f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None and vendor == "nvidia" else ""
            if vendor == "nvidia" and all(g.mig_enabled and not g.mig_devices for g in gpus if g.vendor == vendor):
                return (f"This machine has {names} with MIG on but no MIG instance configured, so CUDA (and llama.cpp) "
                        "sees no GPU: create an instance (nvidia-smi mig -cgi ... -C) or turn MIG off (nvidia-smi -mig 0)")
            return (
                f"This machine has {names} and llama.cpp has the {', '.join(sorted(usable))} backend, but it sees "
                f"no GPU device{hint}: check that the driver is at least as new as the toolkit the build used, "
                f"or rebuild against this driver:\n  {reinstall_command(vendor, build.version)}"
            )
    return None


def llama_version(rig: Any = None) -> str:
    """The llama.cpp a profile is tuned with: the detected build's version, else llama-cpp-python's."""
    build = getattr(rig, "build", None)
    if build is not None and build.version:
        return str(build.version)
    try:
        import llama_cpp

        return f"llama-cpp-python {llama_cpp.__version__}"
    except ImportError:
        return "unknown"
