"""RunConfig: one complete way to run a model, the currency between sizing (which proposes it), the tuner
(which measures and improves it), the runtime (which loads it), export (which writes it as llama.cpp
command lines) and the config file (`moetui run --config`)."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moetui.errors import ConfigError
from moetui.paths import StateError, atomic_write_json, parse_state

FLASH_ATTN = ("auto", "on", "off")
LOAD_MODES = ("auto", "none", "mmap", "mlock", "mmap+mlock", "dio")
SPLIT_MODES = ("none", "layer", "row")
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
CONFIG_VERSION = 1
# RunConfig's fields by the type a config file must give them (checked field by field, named in the error)
_WHOLE_NUMBERS = ("n_ctx", "n_gpu_layers", "main_gpu", "n_batch", "n_ubatch", "n_parallel", "seed")
_WHOLE_OR_NONE = ("n_threads", "n_threads_batch")
_TEXTS = ("model_path", "split_mode", "flash_attn", "cache_type_k", "cache_type_v", "load_mode")


@dataclass
class TensorOverride:
    """A llama.cpp tensor buffer override: tensors whose name matches `pattern` (a regex, searched) go to
    the buffer type named `device` ("CPU", "CUDA0", ...) — what `-ot pattern=device` does."""

    pattern: str
    device: str = "CPU"

    def to_arg(self) -> str:
        return f"{self.pattern}={self.device}"


# Routed-expert overrides as moetui (moetui.sizing.overrides) and llama.cpp's --n-cpu-moe write them.
ALL_PARTS = frozenset({"up", "gate", "down"})
_WHOLE = re.compile(r"^blk\\\.\(?([0-9|]+)\)?\\\.ffn_\(up\|down\|gate(?:\|gate_up)?\)_(?:\(ch\|\))?exps$")
_PART = re.compile(r"^blk\\\.([0-9]+)\\\.ffn_(up|down|gate|gate_up)_exps$")
_NCMOE = re.compile(r"^blk\\\.([0-9]+)\\\.ffn_\(up\|down\|gate\|gate_up\)_\(ch\|\)exps$")


def part_in(part: str, parts: set[str] | frozenset[str]) -> bool:
    """Whether an expert part (a tensor's) is among parts, a fused gate_up being in when up and gate are."""
    return part in parts or (part == "gate_up" and {"up", "gate"} <= parts)


def layers_from_overrides(overrides: list[TensorOverride]) -> dict[int, set[str]] | None:
    """Parse moetui's (and --n-cpu-moe's) expert overrides back to layer -> parts on the CPU.
    None if some override is not of that form (a hand-written regex)."""
    cpu: dict[int, set[str]] = {}
    for o in overrides:
        if o.device.upper() != "CPU":
            return None
        m = _WHOLE.match(o.pattern) or _NCMOE.match(o.pattern)
        if m:
            for il in m.group(1).split("|"):
                cpu.setdefault(int(il), set()).update(ALL_PARTS)
            continue
        m = _PART.match(o.pattern)
        if m:
            part = m.group(2)
            cpu.setdefault(int(m.group(1)), set()).update({"up", "gate"} if part == "gate_up" else {part})
            continue
        return None
    return cpu


@dataclass
class DraftConfig:
    """Speculative decoding. kind "model": a draft GGUF with its own placement; kind "ngram": prompt
    lookup decoding (no second model)."""

    kind: str = "model"
    model_path: str | None = None
    n_gpu_layers: int = -1
    overrides: list[TensorOverride] = field(default_factory=list)
    draft_max: int = 16
    draft_min: int = 0
    n_ctx: int | None = None  # None: the target's context


@dataclass
class RunConfig:
    model_path: str
    n_ctx: int = 4096
    n_gpu_layers: int = -1  # -1: every layer (llama.cpp "all")
    overrides: list[TensorOverride] = field(default_factory=list)
    split_mode: str = "layer"
    main_gpu: int = 0
    tensor_split: list[float] | None = None
    flash_attn: str = "auto"
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    n_threads: int | None = None  # None: llama.cpp's default
    n_threads_batch: int | None = None
    n_batch: int = 2048
    n_ubatch: int = 512
    load_mode: str = "auto"
    # llama.cpp's weight repacking (extra CPU buffer types: AMX, CPU_REPACK); False is `--no-repack`,
    # which the plan picks where the probe saw repacked kernels crash (moetui.hardware.repack)
    repack: bool = True
    # llama.cpp's --no-host: weights the CPU computes skip the GPU backend's pinned host buffer, so the
    # CPU's extra (repacked) buffer types can hold them (moetui.config.llama_flags)
    no_host: bool = False
    n_parallel: int = 1
    seed: int = -1
    draft: DraftConfig | None = None
    # llama.cpp RPC servers ("host:port") whose devices join the load, what `--rpc` lists (moetui.hardware.rpc)
    rpc_servers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why: the planner's or tuner's explanation

    def __post_init__(self) -> None:
        self.validate()

    def _check_types(self) -> None:
        """Each field of the type it must have, so that `"n_ctx": "lots"` is refused by name, not by a
        comparison failing somewhere later."""
        for name in _WHOLE_NUMBERS + _WHOLE_OR_NONE:
            v = getattr(self, name)
            if not (v is None and name in _WHOLE_OR_NONE) and (not isinstance(v, int) or isinstance(v, bool)):
                raise ConfigError(f"{name} must be a whole number, not {v!r}")
        for name in _TEXTS:
            if not isinstance(getattr(self, name), (str, os.PathLike) if name == "model_path" else str):
                raise ConfigError(f"{name} must be text, not {getattr(self, name)!r}")
        if not isinstance(self.repack, bool):
            raise ConfigError(f"repack must be true or false, not {self.repack!r}")
        ts = self.tensor_split
        if ts is not None and (not isinstance(ts, list)
                               or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in ts)):
            raise ConfigError(f"tensor_split must be a list of numbers, not {ts!r}")
        for name in ("rpc_servers", "notes"):
            v = getattr(self, name)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{name} must be a list of text, not {v!r}")

    def validate(self) -> None:
        self._check_types()
        if self.flash_attn not in FLASH_ATTN:
            raise ConfigError(f"flash_attn must be one of {FLASH_ATTN}, not {self.flash_attn!r}")
        if self.load_mode not in LOAD_MODES:
            raise ConfigError(f"load_mode must be one of {LOAD_MODES}, not {self.load_mode!r}")
        if self.split_mode not in SPLIT_MODES:
            raise ConfigError(f"split_mode must be one of {SPLIT_MODES}, not {self.split_mode!r}")
        for name in ("cache_type_k", "cache_type_v"):
            if getattr(self, name) not in CACHE_TYPES:
                raise ConfigError(f"{name} must be one of {CACHE_TYPES}, not {getattr(self, name)!r}")
        if self.n_ctx < 0 or self.n_batch <= 0 or self.n_ubatch <= 0:
            raise ConfigError("n_ctx must be >= 0 and n_batch, n_ubatch > 0")
        if self.n_ubatch > self.n_batch:
            raise ConfigError(f"n_ubatch ({self.n_ubatch}) cannot exceed n_batch ({self.n_batch})")
        if self.draft and self.draft.kind not in ("model", "ngram"):
            raise ConfigError(f"draft kind must be 'model' or 'ngram', not {self.draft.kind!r}")
        if self.draft and self.draft.kind == "model" and not self.draft.model_path:
            raise ConfigError("a draft of kind 'model' needs model_path")

    def _check_types(self) -> None:
        """Whole numbers where llama.cpp takes them, text where it takes text: a hand-edited or corrupt
        saved config ("n_gpu_layers": "all") is refused here, by name, not deep in an export or a load."""
        for name in ("n_ctx", "n_gpu_layers", "main_gpu", "n_batch", "n_ubatch", "n_parallel", "seed",
                     "n_threads", "n_threads_batch"):
            value = getattr(self, name)
            if value is None and name in ("n_threads", "n_threads_batch"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or abs(int(value)) > 1 << 40:
                raise ConfigError(f"{name} must be a whole number, not {str(value)[:40]!r}")
        if not isinstance(self.model_path, str) or "\0" in self.model_path:
            raise ConfigError(f"model_path must be a file path, not {str(self.model_path)[:40]!r}")
        if not isinstance(self.repack, bool):
            raise ConfigError(f"repack must be true or false, not {str(self.repack)[:40]!r}")
        for name in ("rpc_servers", "notes"):
            if not isinstance(getattr(self, name), list) or not all(isinstance(x, str) for x in getattr(self, name)):
                raise ConfigError(f"{name} must be a list of strings")
        if not all(isinstance(o, TensorOverride) and isinstance(o.pattern, str) and isinstance(o.device, str)
                   for o in self.overrides):
            raise ConfigError("overrides must be pattern/device pairs of strings")
        if self.tensor_split is not None and not (
                isinstance(self.tensor_split, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                            and math.isfinite(x) and x >= 0 for x in self.tensor_split)):
            raise ConfigError("tensor_split must be a list of non-negative numbers")

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    # --- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["version"] = CONFIG_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], model_path: str | None = None) -> "RunConfig":
        """model_path: the model the caller names (MODEL on the command line): it overrides the file's,
        and a file without one is fine then."""
        d = dict(d)
        if model_path is not None:
            d["model_path"] = model_path
        d.pop("version", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        if "model_path" not in d:
            raise ConfigError("config has no model_path")
        for name in ("overrides", "rpc_servers", "notes"):
            if not isinstance(d.get(name) or [], list):
                raise ConfigError(f"{name} must be a list, not {d[name]!r}")
        try:
            d["overrides"] = [TensorOverride(**o) for o in d.get("overrides") or []]
            if d.get("draft"):
                draft = dict(d["draft"])
                draft["overrides"] = [TensorOverride(**o) for o in draft.get("overrides") or []]
                d["draft"] = DraftConfig(**draft)
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid config: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str], model_path: str | None = None) -> "RunConfig":
        """model_path: see from_dict."""
        path = Path(path)
        try:
            data = parse_state(path.read_bytes())  # a user's file: refused if corrupt, never moved
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: a folder, not a config file") from None
        except StateError as exc:
            raise ConfigError(f"{path}: not a moetui config file ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a moetui config file")
        try:
            return cls.from_dict(data, model_path)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    # --- placement helpers ----------------------------------------------------------------------------
    def expert_layers_on_cpu(self) -> dict[int, set[str]] | None:
        """Layer -> expert parts overridden to CPU, when overrides are per-layer expert patterns as moetui
        writes them; None if the overrides are of another form."""
        return layers_from_overrides(self.overrides)
