"""The one table of llama.cpp settings: per RunConfig field, its llama-server/llama-cli flag (short and
long spelling), its llama-bench flag, its llama-cpp-python keyword, how its value is written and read
back, and since which llama.cpp it exists. Read by the exported command lines (moetui.export.commandline),
their parser (moetui.export.parse), `moetui run`'s flags (choices included) and both keyword mappings
(moetui.runtime.llama_setup for the worker, moetui.export.python_snippet for the script): `llama_kwargs`
is the one RunConfig -> llama_cpp.Llama() mapping.

Adding a setting: a RunConfig field, a row here, its test (tests/test_llama_flags.py); where
llama-cpp-python has no keyword for it, the worker's ctypes hook (moetui.runtime.overrides_ctypes) sets it.

Tensor overrides (-ot, -ncmoe, -cmoe) and the draft model (-md, -ngld, ...) are structured, not one
value: the export and the parser write and read them with their own code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moetui.config import CACHE_TYPES, FLASH_ATTN, LOAD_MODES, SPLIT_MODES
from moetui.errors import ConfigError

if TYPE_CHECKING:
    import argparse

    from moetui.config import RunConfig

VENDORED = "0c1e57098"  # the llama.cpp llama-cpp-python 0.3.36 vendors: every row is in it

# llama.cpp's enums as llama-cpp-python takes them (stable numbers of the C API)
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
SPLIT_MODE_IDS = {"none": 0, "layer": 1, "row": 2}
LOAD_MODE_IDS = {"auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap+mlock": 3, "dio": 4}  # enum llama_load_mode
FLASH_ATTN_IDS = {"auto": -1, "off": 0, "on": 1}  # enum llama_flash_attn_type
NGL_ALL = "all"


@dataclass(frozen=True)
class LlamaSetting:
    field: str  # the RunConfig field
    flag: str | None  # llama-server / llama-cli spelling (the short one where there is one)
    long: str | None  # the long spelling (what --help lists first)
    bench: str | None  # llama-bench's spelling (None: llama-bench has none)
    kind: str  # "int" | "str" | "switch" (a bare flag turns it on) | "floats" | "list"
    kwarg: str | None  # llama_cpp.Llama() keyword; None: set through the ctypes hooks, or not by Llama()
    since: str  # the llama.cpp that has it (commit or release)
    help: str
    choices: tuple[str, ...] | None = None
    tools: tuple[str, ...] = ("server", "cli", "bench")  # the tools that take it
    on_run: bool = True  # a `moetui run` flag (off: a setting of moetui.sizing.settings, or not for runs)
    to_kwarg: Callable[[Any, Any], Any] | None = None  # (value, config) -> the keyword's value

    def spellings(self) -> tuple[str, ...]:
        return tuple(s for s in (self.flag, self.long) if s)

    def parse(self, text: str) -> Any:
        """A value as a command line writes it, back to the field's value (ValueError if it is not one)."""
        if self.kind == "int":
            return int(text)
        if self.kind == "floats":
            return [float(x) for x in text.replace("/", ",").split(",") if x]
        if self.kind == "list":
            return [x for x in text.split(",") if x]
        if self.choices is not None and text not in self.choices:
            raise ValueError(f"{self.flag or self.long} {text!r}: one of {', '.join(self.choices)}")
        return text


def _row(field: str, flag: str | None, long: str | None, bench: str | None, kind: str, kwarg: str | None,
         help: str, **kw: Any) -> LlamaSetting:
    return LlamaSetting(field, flag, long, bench, kind, kwarg, kw.pop("since", VENDORED), help, **kw)


SETTINGS: tuple[LlamaSetting, ...] = (
    _row("n_ctx", "-c", "--ctx-size", None, "int", "n_ctx", "context size", on_run=False,
         tools=("server", "cli")),
    _row("n_gpu_layers", "-ngl", "--n-gpu-layers", "-ngl", "int", "n_gpu_layers",
         "layers on the GPU (-1: all)"),
    _row("split_mode", "-sm", "--split-mode", "-sm", "str", "split_mode", "how layers are split across GPUs",
         choices=SPLIT_MODES, to_kwarg=lambda v, c: SPLIT_MODE_IDS[v]),
    _row("main_gpu", "-mg", "--main-gpu", "-mg", "int", "main_gpu", "the GPU for the whole model (-sm none)"),
    _row("tensor_split", "-ts", "--tensor-split", "-ts", "floats", "tensor_split",
         "the share of the layers per GPU, e.g. 3,1"),
    _row("flash_attn", "-fa", "--flash-attn", "-fa", "str", "flash_attn", "flash attention", choices=FLASH_ATTN,
         to_kwarg=lambda v, c: v == "on"),  # "auto" is set on the context params by the hooks
    _row("cache_type_k", "-ctk", "--cache-type-k", "-ctk", "str", "type_k", "KV cache type of K",
         choices=CACHE_TYPES, to_kwarg=lambda v, c: GGML_TYPES[v]),
    _row("cache_type_v", "-ctv", "--cache-type-v", "-ctv", "str", "type_v", "KV cache type of V",
         choices=CACHE_TYPES, to_kwarg=lambda v, c: GGML_TYPES[v]),
    _row("n_threads", "-t", "--threads", "-t", "int", "n_threads", "threads for decoding"),
    # llama.cpp: --threads-batch defaults to --threads (llama-cpp-python would take every core)
    _row("n_threads_batch", "-tb", "--threads-batch", None, "int", "n_threads_batch",
         "threads for prompt processing (default: -t)", tools=("server", "cli"),
         to_kwarg=lambda v, c: v or c.n_threads),
    _row("n_batch", "-b", "--batch-size", "-b", "int", "n_batch", "logical batch size"),
    _row("n_ubatch", "-ub", "--ubatch-size", "-ub", "int", "n_ubatch", "physical batch (prompt chunk) size",
         on_run=False),
    _row("load_mode", "-lm", "--load-mode", "-lm", "str", None, "how the weights are loaded", choices=LOAD_MODES),
    _row("repack", "-nr", "--no-repack", "--repack", "switch", None, "no weight repacking (CPU_REPACK, AMX)"),
    # llama_model_params.no_host: weights the CPU computes go to the CPU's extra (repacked) buffers instead
    # of the GPU backend's pinned host buffer. Only changes anything where a GPU backend is in the build.
    _row("no_host", None, "--no-host", "--no-host", "switch", None,
         "bypass the GPU backend's host buffer so the CPU's extra (repacked) buffer types can be used"),
    _row("seed", "-s", "--seed", None, "int", "seed", "sampling seed (-1: random)", tools=("server", "cli")),
    _row("n_parallel", "-np", "--parallel", None, "int", None, "server slots", tools=("server",), on_run=False),
    _row("rpc_servers", None, "--rpc", "--rpc", "list", None, "RPC servers whose devices join", on_run=False),
)
BY_FIELD = {s.field: s for s in SETTINGS}
SWITCH_DEFAULTS = {"repack": True, "no_host": False}  # a switch flips its field away from this


def row(field: str) -> LlamaSetting:
    return BY_FIELD[field]


def flag(field: str) -> str:
    """The llama-server/llama-cli spelling of a field's flag."""
    s = BY_FIELD[field]
    return s.flag or s.long or ""


def llama_kwargs(cfg: RunConfig, *, n_gpu_layers: int | None = None, n_ctx: int | None = None) -> dict[str, Any]:
    """Keyword arguments for llama_cpp.Llama: the one mapping, for the worker and the exported script.
    The load mode, flash attention "auto", repacking and no_host are not expressible there: the ctypes
    hooks set them on llama.cpp's params. A seed of -1 (random) is left to llama-cpp-python."""
    kw: dict[str, Any] = {}
    for s in SETTINGS:
        if s.kwarg is None:
            continue
        v = getattr(cfg, s.field)
        kw[s.kwarg] = s.to_kwarg(v, cfg) if s.to_kwarg else v
    if n_gpu_layers is not None:
        kw["n_gpu_layers"] = n_gpu_layers
    if n_ctx is not None:
        kw["n_ctx"] = n_ctx
    if cfg.seed < 0:
        kw.pop("seed")
    return kw


def add_llama_arguments(g: Any) -> None:
    """`moetui run`'s (and `moetui bench`'s) llama.cpp flags, spelled as llama.cpp spells them."""
    for s in SETTINGS:
        if not s.on_run:
            continue
        if s.kind == "switch":
            g.add_argument(*s.spellings(), action="store_const", const=not SWITCH_DEFAULTS[s.field], default=None,
                           dest=s.field, help=s.help)
        else:
            g.add_argument(*s.spellings(), dest=s.field, type=int if s.kind == "int" else str, choices=s.choices,
                           help=s.help)


def llama_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields the llama.cpp flags of `add_llama_arguments` set (those given)."""
    out: dict[str, Any] = {}
    for s in SETTINGS:
        v = getattr(args, s.field, None) if s.on_run else None
        if v is None:
            continue
        try:
            out[s.field] = s.parse(v) if isinstance(v, str) else v
        except ValueError:
            raise ConfigError(f"{s.flag or s.long} wants {s.help}, not {v!r}", field=s.field) from None
    return out
