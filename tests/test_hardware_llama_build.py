"""Reading the installed llama.cpp build where its libraries live outside the package (LLAMA_CPP_LIB_PATH,
as on the GPU machine), and the plain advice when the build cannot use the machine's GPU.

The relocation tests run the real CPU build of llama-cpp-python in a subprocess, moved the way a CUDA build
is kept on a GPU box: the Python package in one folder, its shared libraries in another."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moetui.cli.detect_cmd import render
from moetui.hardware import detect, llama_build
from moetui.hardware.fake_nvml import FakeNvml
from moetui.hardware.rig import GPUInfo, LlamaBuildInfo, LlamaDevice

FIX = Path(__file__).parent / "fixtures" / "hardware"
REPO = Path(__file__).resolve().parents[1]


def _local(backends: list[str]) -> list[str]:
    """The backends that are devices of this machine: the README's install builds in RPC (other hosts)."""
    return [b for b in backends if b != "RPC"]


def _pythonpath(*first: Path) -> str:
    """These folders first, then whatever PYTHONPATH already holds (a GPU box brings deps that way)."""
    return os.pathsep.join([*(str(p) for p in first), *filter(None, [os.environ.get("PYTHONPATH")])])
# pinned to the installed release: the runtime depends on 0.3.36 internals, an unpinned pip gets the newest
INSTALLED = importlib.metadata.version("llama_cpp_python")
REINSTALL = f'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python=={INSTALLED}'


def _installed_build_offloads() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


cpu_build_only = pytest.mark.skipif(_installed_build_offloads(), reason="asserts this machine's CPU-only build")


@pytest.fixture(scope="module")
def relocated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(site dir holding llama_cpp without lib/, lib dir holding the real libllama/libggml*)."""
    import llama_cpp

    if os.environ.get("LLAMA_CPP_LIB_PATH"):
        pytest.skip("this environment already keeps its libraries outside the package")
    pkg = Path(llama_cpp.__file__).parent
    base = tmp_path_factory.mktemp("relocated")
    site, libs = base / "site", base / "libs"
    shutil.copytree(pkg, site / "llama_cpp", ignore=shutil.ignore_patterns("lib", "__pycache__", "server"))
    shutil.copytree(pkg / "lib", libs, symlinks=True)
    return site, libs


PROBE = """
import dataclasses, json, sys
from moetui.hardware import llama_build
w = []
b = llama_build.read_llama_build(w)
imported = "llama_cpp" in sys.modules
loaded = [str(p) for p in llama_build.loaded_ggml_paths()]
import llama_cpp  # now the package itself, loading the same libraries
w2 = []
again = llama_build.read_llama_build(w2)
print(json.dumps({"backends": b.backends, "devices": [d.__dict__ for d in b.devices], "lib_dir": b.lib_dir,
                  "warnings": w, "loaded": loaded, "pkg": llama_cpp.__file__, "imported_by_read": imported,
                  "light": dataclasses.asdict(b), "via_import": dataclasses.asdict(again), "warnings_via_import": w2,
                  "loaded_after_import": [str(p) for p in llama_build.loaded_ggml_paths()]}))
"""


def _probe(pythonpath: list[Path], lib_path: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=_pythonpath(*pythonpath, REPO))
    env.pop("LLAMA_CPP_LIB_PATH", None)
    if lib_path is not None:
        env["LLAMA_CPP_LIB_PATH"] = str(lib_path)
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_libraries_outside_the_package_are_found_through_llama_cpp_lib_path(relocated: tuple[Path, Path]) -> None:
    """The GPU-box layout: before this was handled, detect said 'backends: ?' there."""
    site, libs = relocated
    out = _probe([site], libs)
    assert out["pkg"].startswith(str(site)), "the relocated package must be the one imported"
    assert out["warnings"] == []
    assert _local(out["backends"]) == ["CPU"]
    (cpu,) = out["devices"]
    assert cpu["type"] == "cpu" and cpu["memory_total_bytes"] > 2**30 and cpu["memory_free_bytes"] > 0
    assert Path(out["lib_dir"]).resolve() == libs.resolve()
    assert [Path(p).resolve().parent for p in out["loaded"]] == [libs.resolve()]
    _same_answer_both_ways(out)


def _same_answer_both_ways(out: dict) -> None:
    """Reading without importing llama_cpp (the fast way) and through the imported package agree, and
    the package then loads no second libggml."""
    assert not out["imported_by_read"], "read_llama_build must not import llama_cpp (0.4 s of imports)"
    light, full = out["light"], out["via_import"]
    for d in (light, full):
        for dev in d["devices"]:
            dev.pop("memory_free_bytes")  # moves between the two reads
    assert light == full and out["warnings_via_import"] == []
    assert out["loaded_after_import"] == out["loaded"]


def test_lib_path_wins_over_the_package_copy_and_no_second_libggml_is_loaded(relocated: tuple[Path, Path]) -> None:
    """Installed package (which has its own lib/) + LLAMA_CPP_LIB_PATH elsewhere: llama_cpp loads the
    override, and so must we; loading the package's libggml too would read a different build."""
    _site, libs = relocated
    out = _probe([], libs)
    assert out["warnings"] == [] and _local(out["backends"]) == ["CPU"]
    assert Path(out["lib_dir"]).resolve() == libs.resolve()
    assert len(out["loaded"]) == 1 and Path(out["loaded"][0]).resolve().parent == libs.resolve()
    _same_answer_both_ways(out)


def test_installed_package_read_without_importing_it() -> None:
    here = os.environ.get("LLAMA_CPP_LIB_PATH")
    out = _probe([], Path(here) if here else None)
    assert out["warnings"] == [] and "CPU" in out["backends"]
    _same_answer_both_ways(out)


def test_lib_path_without_libraries_degrades_to_a_warning(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=_pythonpath(REPO), LLAMA_CPP_LIB_PATH=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "moetui", "detect", "--no-bandwidth", "--json"],
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    rig = json.loads(p.stdout)
    # llama_cpp itself cannot load libllama from an empty folder: said once, no traceback
    assert not rig["build"]["installed"]
    assert any("llama-cpp-python not importable" in w for w in rig["warnings"])


def test_loaded_ggml_paths_reads_proc_maps_format() -> None:
    maps = "\n".join([
        "7f00-7f01 r--p 00000000 08:01 1 /opt/cuda-build/libggml-base.so.0.9.4",
        "7f01-7f02 r-xp 00001000 08:01 2 /opt/cuda-build/libggml.so.0.9.4",
        "7f02-7f03 r--p 00002000 08:01 2 /opt/cuda-build/libggml.so.0.9.4",
        "7f03-7f04 r-xp 00000000 08:01 3 /opt/cuda-build/libggml-cuda.so",
        "7f04-7f05 rw-p 00000000 00:00 0 ",
        "7f05-7f06 r-xp 00000000 08:01 4 /usr/lib/libggml.so",
        "7f06-7f07 r-xp 00000000 08:01 5 /usr/lib/libggml-vulkan.so",
    ])
    assert llama_build.loaded_ggml_paths(maps) == [Path("/opt/cuda-build/libggml.so.0.9.4"), Path("/usr/lib/libggml.so")]
    assert llama_build.loaded_ggml_paths("") == []


def test_backends_from_the_real_h100_system_info() -> None:
    real = json.loads((FIX / "detect_h100.json").read_text())
    assert llama_build.backends_from_system_info(real["build"]["system_info"]) == ["CUDA", "CPU"]
    assert llama_build.backends_from_system_info("Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ") == ["Metal", "CPU"]
    assert llama_build.backends_from_system_info(None) == []


@cpu_build_only
def test_real_cpu_build_with_a_fake_nvidia_gpu_says_so_plainly_in_the_table() -> None:
    """This machine's real CPU-only llama-cpp-python + a recorded RTX 3090 pair: the readable report
    names the cards, says CPU-only and prints the reinstall command from the issue verbatim."""
    rig = detect.detect_rig(nvml=FakeNvml.from_file(FIX / "nvml_two_gpus.json"), measure_bandwidth=False, sysctl_text=None)
    assert rig.build.installed and _local(rig.build.backends) == ["CPU"] and not rig.build.gpu_offload
    text = render(rig)
    assert "!! This machine has NVIDIA GeForce RTX 3090, but the installed llama-cpp-python is a CPU-only build" in text
    assert REINSTALL in text
    assert "backends: CPU, GPU offload: NO" in text
    assert "device       CPU (cpu)" in text
    # the first line of the advice is a warning (for --json readers) but not printed twice in the table
    assert sum("CPU-only build" in w for w in rig.warnings) == 1 and text.count("CPU-only build") == 1


def test_cuda_build_that_sees_no_device_is_reported() -> None:
    nv = [GPUInfo(name="NVIDIA H100 80GB HBM3", vendor="nvidia")]
    blind = LlamaBuildInfo(installed=True, gpu_offload=True, backends=["CUDA", "CPU"], devices=[LlamaDevice(name="CPU", type="cpu")])
    msg = llama_build.advise(blind, nv)
    assert msg and "CUDA backend" in msg and "no GPU device" in msg
    seeing = LlamaBuildInfo(installed=True, gpu_offload=True, backends=["CUDA", "CPU"],
                            devices=[LlamaDevice(name="CUDA0", type="gpu"), LlamaDevice(name="CPU", type="cpu")])
    assert llama_build.advise(seeing, nv) is None
    mig_empty = [GPUInfo(name="NVIDIA H100 80GB HBM3", vendor="nvidia", mig_enabled=True)]
    assert "no MIG instance" in (llama_build.advise(blind, mig_empty) or "")
    # backends unread (device API missing) but the build says it offloads: no false alarm
    assert llama_build.advise(LlamaBuildInfo(installed=True, gpu_offload=True), nv) is None
    # nothing read at all and no offload: CPU-only advice, backends stated as unknown
    unknown = llama_build.advise(LlamaBuildInfo(installed=True), nv)
    assert unknown and "backends: unknown" in unknown
    # version unread: pin the release pyproject pins (the one the runtime is written against)
    assert unknown.rstrip().endswith("llama-cpp-python==0.3.36")


@pytest.mark.parametrize("vendor, gpu, flag", [("nvidia", "NVIDIA H100 80GB HBM3", "-DGGML_CUDA=on"),
                                              ("amd", "AMD Radeon RX 7900 XTX", "-DGGML_HIPBLAS=on"),
                                              ("apple", "Apple M3 Max", "-DGGML_METAL=on")])
def test_reinstall_hint_pins_the_installed_version(vendor: str, gpu: str, flag: str) -> None:
    """A CPU-only build of some version: the rebuild it suggests is that same version, never a bare
    `llama-cpp-python` (which pip resolves to the newest release)."""
    cpu_only = LlamaBuildInfo(installed=True, version="0.3.35", backends=["CPU"],
                              devices=[LlamaDevice(name="CPU", type="cpu")])
    msg = llama_build.advise(cpu_only, [GPUInfo(name=gpu, vendor=vendor)])
    assert msg and "CPU-only build" in msg
    cmd = msg.splitlines()[-1].strip()
    assert cmd.startswith(f'CMAKE_ARGS="{flag}" pip install --force-reinstall --no-cache-dir llama-cpp-python==0.3.35')
