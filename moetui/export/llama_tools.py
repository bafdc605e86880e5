"""Build llama.cpp's own tools (llama-server, llama-bench, ...) from the sources vendored by the installed
llama-cpp-python: the very llama.cpp version the bindings run, so exported command lines can be checked
against the real binaries.

CPU only (-DGGML_NATIVE=ON), no curl/openssl, no tests/examples, only the targets asked for. The result
is cached per llama-cpp-python version in MOETUI_LLAMA_TOOLS_DIR or moetui.paths.cache_dir() /
llama-tools-<ver> (~/.cache/moetui/llama-tools-<ver> on Linux). Tests isolate cache_dir() per test and a
build takes minutes, so tests/conftest.py names one shared folder in MOETUI_LLAMA_TOOLS_DIR. A file lock
keeps two processes from building into the same folder at once.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from moetui.errors import MoetuiError
from moetui.paths import cache_dir

DEFAULT_TARGETS = ("llama-server", "llama-bench")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    # RPC costs nothing unless --rpc is given, and one build serves both uses: a second build for it
    # took another ~10 minutes on a 2-core machine
    "-DGGML_RPC=ON",
)
# A variant names what a caller needs from the build; each maps to the folder that has it. "rpc" (ggml's
# rpc-server, --rpc in llama-server/-cli/-bench) is in the one build, since CMAKE_FLAGS enables RPC.
VARIANT_FOLDERS: dict[str, str] = {"": "", "rpc": ""}  # variant -> folder suffix ("": the one build)


class LlamaToolsError(MoetuiError):
    """llama.cpp's tools could not be fetched or built (no cmake/compiler, download failed, build failed)."""


def installed_llama_cpp_python_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise LlamaToolsError("llama-cpp-python is not installed: cannot tell which llama.cpp to build") from None


def tools_dir(version: str | None = None, variant: str = "") -> Path:
    folder = VARIANT_FOLDERS.get(variant, variant)
    suffix = f"-{folder}" if folder else ""
    env = os.environ.get("MOETUI_LLAMA_TOOLS_DIR")
    if env:
        return Path(env + suffix)

    return cache_dir() / f"llama-tools-{version or installed_llama_cpp_python_version()}{suffix}"


def bin_dir(version: str | None = None, variant: str = "") -> Path:
    return tools_dir(version, variant) / "build" / "bin"


def missing_targets(targets: Iterable[str], version: str | None = None, variant: str = "") -> list[str]:
    bdir = bin_dir(version, variant)
    return [t for t in targets if not os.access(bdir / t, os.X_OK)]


def _log(out: TextIO | None, msg: str) -> None:
    if out is not None:
        print(f"[llama-tools] {msg}", file=out, flush=True)


def _run(cmd: list[str], log_path: Path, what: str, cwd: Path | None = None) -> None:
    with open(log_path, "ab") as fh:
        fh.write(("\n$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        try:
            rc = subprocess.run(cmd, check=False, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd).returncode
        except FileNotFoundError:
            raise LlamaToolsError(f"{what}: {cmd[0]} not found (install it to build llama.cpp's tools)") from None
    if rc != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise LlamaToolsError(f"{what} failed (exit {rc}), see {log_path}: " + " | ".join(tail[-3:]))


def llama_source(version: str, root: Path, log_path: Path, out: TextIO | None = None) -> Path:
    """The vendored llama.cpp tree: MOETUI_LLAMA_SRC (a llama.cpp tree or an unpacked sdist) if set, else
    <root>/src/llama_cpp_python-<ver>/vendor/llama.cpp, downloading and unpacking the sdist if needed."""
    env = os.environ.get("MOETUI_LLAMA_SRC")
    if env:
        for cand in (Path(env), Path(env) / "vendor" / "llama.cpp"):
            if (cand / "CMakeLists.txt").is_file() and (cand / "common" / "arg.cpp").is_file():
                return cand
        raise LlamaToolsError(f"MOETUI_LLAMA_SRC={env} is not a llama.cpp source tree")
    src = root / "src" / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").is_file():
        return src
    sdist_dir = root / "sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    tarballs = sorted(sdist_dir.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not tarballs:
        _log(out, f"downloading the llama-cpp-python {version} sdist")
        _run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q",
              f"llama-cpp-python=={version}", "-d", str(sdist_dir)], log_path, "pip download")
        tarballs = sorted(sdist_dir.glob("llama_cpp_python-*.tar.gz"))
        if not tarballs:
            raise LlamaToolsError(f"pip download left no llama-cpp-python sdist in {sdist_dir}")
    _log(out, f"unpacking {tarballs[0].name}")
    with tarfile.open(tarballs[0]) as tf:
        tf.extractall(root / "src", filter="data")  # "data": no absolute paths, links out or devices
    if not (src / "CMakeLists.txt").is_file():
        raise LlamaToolsError(f"the sdist has no vendored llama.cpp at {src}")
    return src


def _configured(build: Path) -> bool:
    """A build folder configured with today's flags (one made before RPC was folded in is configured again,
    in place: cmake then rebuilds only what the new flag changes)."""
    cache = build / "CMakeCache.txt"
    try:
        return "GGML_RPC:BOOL=ON" in cache.read_text(errors="replace")
    except OSError:
        return False


def ensure_llama_tools(targets: Iterable[str] = DEFAULT_TARGETS, version: str | None = None,
                       jobs: int | None = None, out: TextIO | None = sys.stderr, variant: str = "") -> Path:
    """The folder holding the llama.cpp binaries `targets` (e.g. "llama-server", "llama-bench"), building
    them first if they are not cached. `variant`: a key of VARIANT_FOLDERS ("rpc": with the RPC backend).
    Raises LlamaToolsError when they cannot be built."""
    targets = list(targets)
    version = version or installed_llama_cpp_python_version()
    if variant not in VARIANT_FOLDERS:
        raise LlamaToolsError(f"unknown llama.cpp tools variant {variant!r} (one of {', '.join(map(repr, VARIANT_FOLDERS))})")
    root = tools_dir(version, variant)
    if not missing_targets(targets, version, variant):
        return bin_dir(version, variant)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building: wait for it, then recheck
        todo = missing_targets(targets, version, variant)
        if not todo:
            return bin_dir(version, variant)
        log_path = root / "build.log"
        src = llama_source(version, root, log_path, out)
        build = root / "build"
        jobs = jobs or int(os.environ.get("MOETUI_LLAMA_TOOLS_JOBS") or os.cpu_count() or 2)
        t0 = time.monotonic()
        if not _configured(build):
            _log(out, f"configuring llama.cpp ({src}) in {build}")
            _run(["cmake", "-S", str(src), "-B", str(build), *CMAKE_FLAGS], log_path,
                 "cmake configure")
        _log(out, f"building {' '.join(todo)} with -j{jobs} (several minutes the first time; log: {log_path})")
        _run(["cmake", "--build", str(build), f"-j{jobs}", "--target", *todo], log_path, "cmake build")
        elapsed = time.monotonic() - t0
        still = missing_targets(targets, version, variant)
        if still:
            raise LlamaToolsError(f"the build finished but {', '.join(still)} is missing from {bin_dir(version, variant)}")
        (root / "build-time.txt").write_text(f"{' '.join(todo)} jobs={jobs} seconds={elapsed:.0f}\n")
        _log(out, f"built {' '.join(todo)} in {elapsed:.0f} s")
    return bin_dir(version, variant)


if __name__ == "__main__":  # python -m moetui.export.llama_tools [TARGET ...]
    print(ensure_llama_tools(sys.argv[1:] or DEFAULT_TARGETS))
