"""Whether llama.cpp's repacked CPU weight buffers run on this machine.

llama.cpp loads CPU weights into "extra" buffer types when the build has them: AMX tiles on Intel Xeons
(Sapphire Rapids and later), CPU_REPACK (AVX2/AVX-512/NEON interleaved layouts). Some virtual machines
advertise AMX in CPUID and /proc/cpuinfo, and the kernel grants the tile permission, yet the first tile
instruction raises SIGILL, killing the process at the first matmul (seen on this project's own 2-core
Xeon VM: `tilezero` in ggml's AMX kernel). No flag says so in advance, so this module asks the real
library: a child process loads a tiny generated model with llama.cpp's default params and decodes a few
tokens. Dying by a signal means "run with --no-repack" (llama.cpp's `use_extra_bufts = false`).

The probe only runs when the build has AMX compiled in (the one trap seen), costs about a second, and
is cached per CPU + build in moetui.paths.cache_dir(). MOETUI_REPACK=on|off skips the probe (the test
suite probes once per session and exports the answer to its children, so per-test cache dirs cost nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from moetui.hardware.llama_build import llama_lib_dir
from moetui.paths import atomic_write_json, cache_dir, expect, load_state

ENV = "MOETUI_REPACK"
PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RepackCheck:
    safe: bool
    reason: str
    probed: bool = False  # a child process ran llama.cpp just now
    cached: bool = False


def _system_info() -> str:
    import llama_cpp  # noqa: PLC0415  (heavy; only when asked)

    si = llama_cpp.llama_print_system_info()
    return si.decode("utf-8", "replace") if isinstance(si, bytes) else str(si)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    return platform.processor()


def _cache_file() -> Path:
    return cache_dir() / "repack-probe.json"


def _key(system_info: str, lib_dir: str | None) -> str:
    if lib_dir is None:
        lib_dir = llama_lib_dir()
    lib = Path(lib_dir)
    stamp = [f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(lib.glob("libggml*.so*"))] if lib.is_dir() else []
    raw = "\n".join([system_info, _cpu_model(), platform.release(), str(lib), *stamp])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _check_verdicts(data: object) -> dict[str, dict]:
    """{key: {"safe": bool, "reason": str}}, as repack_safe writes it."""
    expect(isinstance(data, dict), "not a JSON object")
    for key, v in data.items():  # type: ignore[union-attr]
        expect(isinstance(v, dict) and isinstance(v.get("safe", True), bool) and isinstance(v.get("reason", ""), str),
               f"verdict {key[:40]!r} is not a safe/reason pair")
    return data  # type: ignore[return-value]


def _read_cache() -> dict[str, dict]:
    return load_state(_cache_file(), "repacking verdicts", _check_verdicts) or {}


def run_probe(repack: bool = True, timeout_s: float = PROBE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Decode a few tokens of a tiny generated model in a child, with repacked buffers on or off."""
    env = {**os.environ, ENV: "on" if repack else "off"}
    return subprocess.run([sys.executable, "-m", "moetui.hardware.repack", "--child"], capture_output=True,
                          text=True, timeout=timeout_s, env=env, check=False)


def _verdict(proc: subprocess.CompletedProcess[str]) -> RepackCheck | None:
    if proc.returncode == 0 and "ok" in proc.stdout:
        return RepackCheck(True, "llama.cpp's repacked CPU buffers (AMX) run on this CPU", probed=True)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return RepackCheck(False, f"this CPU advertises AMX but llama.cpp's AMX kernels die with {name} here "
                                  "(seen in VMs that do not pass the tile state through): moetui runs llama.cpp "
                                  "with --no-repack", probed=True)
    return None  # the child failed for another reason: no verdict on repacking


def repack_safe(system_info: str | None = None, lib_dir: str | None = None, *, use_cache: bool = True) -> RepackCheck:
    """Whether to let llama.cpp repack CPU weights here. `system_info`/`lib_dir`: the build's, when the
    caller has read them already (saves importing llama_cpp)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("on", "off"):
        return RepackCheck(forced == "on", f"{ENV}={forced}")
    try:
        si = system_info if system_info is not None else _system_info()
    except Exception as exc:  # llama-cpp-python missing or broken: nothing to decide
        return RepackCheck(True, f"llama.cpp not readable ({type(exc).__name__})")
    if "AMX_INT8 = 1" not in si:
        return RepackCheck(True, "this llama.cpp build has no AMX kernels")
    key = _key(si, lib_dir)
    cache = _read_cache() if use_cache else {}
    if key in cache:
        hit = cache[key]
        return RepackCheck(bool(hit.get("safe", True)), str(hit.get("reason", "")), cached=True)
    try:
        verdict = _verdict(run_probe(repack=True))
    except subprocess.TimeoutExpired:
        verdict = None
    if verdict is None:
        return RepackCheck(True, "the AMX probe gave no verdict (its child failed before decoding)")
    cache[key] = {"safe": verdict.safe, "reason": verdict.reason}
    try:
        atomic_write_json(_cache_file(), cache)
    except OSError:
        pass
    return verdict


def disable_repack_by_default() -> None:
    """Make every later llama.cpp model load in this process default to --no-repack, as llama.cpp's own
    tools do with that flag: llama-cpp-python's Llama() has no parameter for it."""
    from llama_cpp import llama_cpp as L  # noqa: PLC0415

    orig = L.llama_model_default_params
    if getattr(orig, "_moetui_no_repack", False):
        return

    def no_repack():  # type: ignore[no-untyped-def]
        params = orig()
        params.use_extra_bufts = False
        return params

    no_repack._moetui_no_repack = True  # type: ignore[attr-defined]
    L.llama_model_default_params = no_repack


def make_llama_cpp_safe() -> RepackCheck:
    """For code that builds Llama() itself (scripts, the test suite): turn repacking off where it traps."""
    check = repack_safe()
    if not check.safe:
        disable_repack_by_default()
    return check


def _child() -> int:
    if os.environ.get(ENV) == "off":
        disable_repack_by_default()
    from llama_cpp import Llama  # noqa: PLC0415

    from moetui.model.proxy import write_proxy  # noqa: PLC0415
    from moetui.model.shapes import load_shape, scaled  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="moetui-repack-") as d:
        path = Path(d) / "probe.gguf"
        write_proxy(scaled(load_shape("qwen3-30b-a3b"), "tiny"), path, "Q4_K_M")
        llm = Llama(str(path), n_ctx=64, n_threads=2, verbose=False)
        llm.eval(llm.tokenize(b"hello world, hello"))  # a prompt batch and a one-token decode: both kernels
        llm.eval([llm.sample(temp=0.0)])
        llm.close()
    print("ok")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        sys.exit(_child())
    print(json.dumps(repack_safe().__dict__))
