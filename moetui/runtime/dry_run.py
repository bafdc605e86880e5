"""llama.cpp's own memory accounting of a config, without allocating it: the dry run llama.cpp's fit does.

A child process loads the model with `no_alloc` in llama_model_params (load mode none: nothing is read
but the header) and creates the context exactly as the worker would (placement overrides, -ngl, context,
KV types, ubatch, flash attention, devices), then asks llama.cpp what each buffer type would hold:
`llama_get_memory_breakdown` (model, context = KV + recurrent state, compute), the same call
common/fit.cpp makes. That function is C++ (it returns a std::map), so it is called through its mangled
name on x86-64 Linux (libstdc++'s map layout, the System V hidden return pointer); elsewhere, or if the
symbol is missing, the figures come from llama.cpp's load log (compute buffers per backend, the KV and
RS totals), and weights are left to the formula.

A crash inside llama.cpp ends the child, not the app: the caller gets DryRunFailed with the log's tail.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moetui.config import RunConfig
from moetui.config.llama_flags import GGML_TYPES, SPLIT_MODE_IDS
from moetui.errors import MoetuiError
from moetui.model.virtual import write_sparse_parts
from moetui.runtime.overrides_ctypes import FLASH_ATTN, build_override_array, loaded_library
from moetui.runtime.rpc_ctypes import register_servers
from moetui.sizing.dry_check import DryRunCheck, apply_dry_run, formula_only
from moetui.sizing.llama_log import parse_load_log

_RESULT = "MOETUI-DRY-RUN "
_BREAKDOWN_SYMBOL = "_Z26llama_get_memory_breakdownPK13llama_context"


class DryRunFailed(MoetuiError):
    """llama.cpp could not dry-run this config (unknown architecture, missing device, bad file)."""


@dataclass
class DeviceBytes:
    model: int = 0
    context: int = 0  # KV cache + recurrent state
    compute: int = 0

    @property
    def total(self) -> int:
        return self.model + self.context + self.compute


@dataclass
class DryRun:
    """What llama.cpp would allocate, per device ("CPU" for every host buffer type)."""

    devices: dict[str, DeviceBytes]
    buffers: list[dict[str, Any]] = field(default_factory=list)  # per buffer type, as llama.cpp names it
    source: str = "llama_get_memory_breakdown"  # or "log" where the breakdown call is not available
    log: str = ""  # llama.cpp's log of the load

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "devices": {d: asdict(b) for d, b in self.devices.items()},
                "buffers": self.buffers}


def dry_run(cfg: RunConfig, timeout: float = 180.0, allocate: bool = False) -> DryRun:
    """llama.cpp's accounting of `cfg`, measured in a child process (nothing is allocated or read but
    the GGUF header). allocate=True loads for real instead (load mode none: every buffer allocated and
    filled, as a run without mmap would), which is how tests hold the dry run to the real allocation."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2])]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        r = subprocess.run([sys.executable, "-m", "moetui.runtime.dry_run", *(["--allocate"] if allocate else [])],
                           input=json.dumps(cfg.to_dict()),
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise DryRunFailed(f"llama.cpp's dry run of {cfg.model_path} took over {timeout:.0f} s") from None
    line = next((ln for ln in reversed(r.stdout.splitlines()) if ln.startswith(_RESULT)), None)
    if r.returncode != 0 or line is None:
        tail = [ln for ln in r.stderr.splitlines() if ln.strip()][-3:]
        raise DryRunFailed(f"llama.cpp could not dry-run {cfg.model_path} (exit {r.returncode}): "
                           + (" | ".join(tail) or "no output"))
    data = json.loads(line[len(_RESULT):])
    if data.get("source") == "log":
        log = parse_load_log(r.stderr)
        data["devices"] = _devices_from_log(log)
    devices = {d: DeviceBytes(**b) for d, b in data["devices"].items()}
    return DryRun(devices, data.get("buffers", []), data.get("source", "log"), r.stderr)


def _devices_from_log(log: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for dev, n in log.compute.items():
        key = "CPU" if dev.startswith("CPU") or dev.endswith("_Host") else dev
        out.setdefault(key, {"model": 0, "context": 0, "compute": 0})["compute"] += n
    return out


def check_plan(memory: dict[str, Any], cfg: RunConfig, on_this_machine: bool = True,
               header_parts: list[tuple[str, bytes, int]] | None = None,
               budgets: dict[str, int] | None = None) -> DryRunCheck:
    """Dry-run the plan's config and put llama.cpp's figures in `memory` (the plan's per-device
    MemoryBreakdowns, in place); where llama.cpp cannot dry-run it here, say the figures are the formula's.
    A model not on this disk (hub, shape preset) is dry-run from its headers over sparse data."""
    if not on_this_machine:
        return formula_only("the plan is for another rig")
    with tempfile.TemporaryDirectory(prefix="moetui-dry-") as tmp:
        if not Path(cfg.model_path).is_file():
            if not header_parts:
                return formula_only("the model file is not on this disk")
            try:
                cfg = cfg.replace(model_path=str(write_sparse_parts(header_parts, tmp)))
            except OSError as exc:
                return formula_only(f"no room for its header: {exc}")
        try:
            dry = dry_run(cfg)
        except (DryRunFailed, OSError) as exc:
            return formula_only(str(exc))
    missing = [d for d, m in memory.items() if d != "CPU" and m.total and d not in dry.devices]
    if missing:
        return formula_only(f"llama.cpp here has no device {', '.join(missing)}")
    return apply_dry_run(memory, dry.devices, budgets)


# ---- the child ------------------------------------------------------------------------------------
def _measure(cfg: RunConfig, allocate: bool = False) -> dict[str, Any]:
    from llama_cpp import llama_cpp as L  # noqa: PLC0415

    from moetui.runtime.llama_setup import ContextSettings  # noqa: PLC0415

    L.llama_backend_init()
    if cfg.rpc_servers:
        register_servers(",".join(cfg.rpc_servers))
    mp = L.llama_model_default_params()
    mp.no_alloc = not allocate
    mp.load_mode = 0  # none: the fit pass maps nothing and reads no tensor data
    mp.n_gpu_layers = 0x7FFFFFFF if cfg.n_gpu_layers < 0 else cfg.n_gpu_layers
    mp.split_mode = SPLIT_MODE_IDS[cfg.split_mode]
    mp.main_gpu = cfg.main_gpu
    mp.use_extra_bufts = bool(cfg.repack)
    if cfg.tensor_split:
        split = (ctypes.c_float * L.llama_max_devices())(*cfg.tensor_split)
        mp.tensor_split = split
    overrides = build_override_array(cfg.overrides)
    if overrides is not None:
        mp.tensor_buft_overrides = overrides.address
    model = L.llama_model_load_from_file(cfg.model_path.encode(), mp)
    if not model:
        raise SystemExit("failed to load the model (no_alloc)")
    cp = L.llama_context_default_params()
    ContextSettings.from_config(cfg).apply(cp)
    cp.flash_attn_type = FLASH_ATTN[cfg.flash_attn]
    cp.type_k, cp.type_v = GGML_TYPES[cfg.cache_type_k], GGML_TYPES[cfg.cache_type_v]
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("failed to create the context (no_alloc)")
    sys.stderr.flush()
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return {"source": "log"}
    fn = getattr(L._lib, _BREAKDOWN_SYMBOL, None)  # noqa: SLF001
    if fn is None:
        return {"source": "log"}
    base = ctypes.CDLL(loaded_library("libggml-base"))
    for name, restype in (("ggml_backend_buft_name", ctypes.c_char_p), ("ggml_backend_buft_is_host", ctypes.c_bool),
                          ("ggml_backend_buft_get_device", ctypes.c_void_p), ("ggml_backend_dev_name", ctypes.c_char_p)):
        getattr(base, name).argtypes, getattr(base, name).restype = [ctypes.c_void_p], restype
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    # std::map (libstdc++): compare slot, then the header node {color, parent=root, left, right}, count.
    # Nodes: {color, parent, left, right} then the value pair<buft, {model, context, compute}>.
    out_map = (ctypes.c_size_t * 8)()
    fn(ctypes.addressof(out_map), ctx)
    words = ctypes.POINTER(ctypes.c_size_t)
    buffers: list[dict[str, Any]] = []

    def walk(node: int, depth: int = 0) -> None:
        if not node or depth > 64:
            return
        n = ctypes.cast(node, words)
        walk(n[2], depth + 1)
        buft = n[4]
        name = base.ggml_backend_buft_name(buft).decode()
        if base.ggml_backend_buft_is_host(buft):
            device = "CPU"
        else:
            dev = base.ggml_backend_buft_get_device(buft)
            device = base.ggml_backend_dev_name(dev).decode() if dev else name
        buffers.append({"buffer": name, "device": device, "model": n[5], "context": n[6], "compute": n[7]})
        walk(n[3], depth + 1)

    walk(out_map[2])
    if len(buffers) != out_map[5]:
        return {"source": "log"}
    devices: dict[str, dict[str, int]] = {}
    for b in buffers:
        d = devices.setdefault(b["device"], {"model": 0, "context": 0, "compute": 0})
        for k in ("model", "context", "compute"):
            d[k] += b[k]
    return {"source": "llama_get_memory_breakdown", "devices": devices, "buffers": buffers}


def main() -> int:
    cfg = RunConfig.from_dict(json.loads(sys.stdin.read()))
    result = _measure(cfg, allocate="--allocate" in sys.argv[1:])
    sys.stderr.flush()
    print(_RESULT + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
