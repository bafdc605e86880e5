"""RunConfig -> a Python script that loads the model with llama-cpp-python with the same settings.

llama-cpp-python's `Llama()` cannot express tensor buffer overrides, the load mode or flash attention
"auto": the script sets them on llama.cpp's own params through ctypes, by wrapping
`llama_model_load_from_file` / `llama_init_from_model` for the duration of the load (the same technique
as moetui.runtime.overrides_ctypes, written out inline so the script needs only llama-cpp-python).
"""

from __future__ import annotations

from moetui.config import RunConfig
from moetui.config.llama_flags import FLASH_ATTN_IDS as FLASH_ATTN
from moetui.config.llama_flags import LOAD_MODE_IDS as LOAD_MODES
from moetui.config.llama_flags import llama_kwargs
from moetui.export.commandline import _path_warnings
from moetui.export.flags import VENDORED_COMMITS, installed_llama_cpp_python

_HOOKS = '''
class _BuftOverride(ctypes.Structure):  # struct llama_model_tensor_buft_override
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _buffer_types():
    """Buffer type name -> handle over ggml's devices, as llama.cpp's own -ot parser builds it."""
    from llama_cpp._ggml import libggml as g
    g.ggml_backend_dev_count.restype = ctypes.c_size_t
    g.ggml_backend_dev_get.argtypes, g.ggml_backend_dev_get.restype = [ctypes.c_size_t], ctypes.c_void_p
    g.ggml_backend_dev_buffer_type.argtypes = [ctypes.c_void_p]
    g.ggml_backend_dev_buffer_type.restype = ctypes.c_void_p
    g.ggml_backend_buft_name.argtypes, g.ggml_backend_buft_name.restype = [ctypes.c_void_p], ctypes.c_char_p
    out = {}
    for i in range(g.ggml_backend_dev_count()):
        buft = g.ggml_backend_dev_buffer_type(g.ggml_backend_dev_get(i))
        if buft:
            out[g.ggml_backend_buft_name(buft).decode()] = buft
    return out


def _override_array(overrides):
    """NULL-terminated override array; llama.cpp keeps the pointers: keep the result alive."""
    if not overrides:
        return None
    bufts = _buffer_types()
    arr = (_BuftOverride * (len(overrides) + 1))()  # zeroed: the last entry is the terminator
    for i, (pattern, device) in enumerate(overrides):
        if device not in bufts:
            raise SystemExit(f"buffer type {device!r} unknown to this llama.cpp build (it has {sorted(bufts)})")
        arr[i].pattern = pattern.encode()
        arr[i].buft = bufts[device]
    return arr


@contextlib.contextmanager
def _llama_params(overrides, load_mode, flash_attn, repack=REPACK, no_host=NO_HOST):
    """While loading: set what Llama() cannot express on llama.cpp's own params."""
    orig_load, orig_init = L.llama_model_load_from_file, L.llama_init_from_model

    def load(path, params):
        if overrides is not None:
            params.tensor_buft_overrides = ctypes.addressof(overrides)
        params.load_mode = load_mode
        params.use_extra_bufts = repack
        params.no_host = no_host
        return orig_load(path, params)

    def init(model, params):
        params.flash_attn_type = flash_attn
        return orig_init(model, params)

    L.llama_model_load_from_file, L.llama_init_from_model = load, init
    try:
        yield
    finally:
        L.llama_model_load_from_file, L.llama_init_from_model = orig_load, orig_init
'''


def _target_line() -> str:
    ver = installed_llama_cpp_python()
    commit = VENDORED_COMMITS.get(ver or "")
    return f"llama-cpp-python {ver}" + (f" (llama.cpp {commit})" if commit else "") if ver else "llama-cpp-python"


def python_snippet(cfg: RunConfig, prompt: str = "Hello", max_tokens: int = 32) -> str:
    """A runnable script: loads cfg.model_path with every setting of `cfg`, generates `max_tokens` tokens."""
    diffs: list[str] = []
    if cfg.n_parallel != 1:
        diffs.append(f"n_parallel {cfg.n_parallel}: one Llama serves one sequence; left out")
    if cfg.n_threads is None:
        diffs.append("n_threads unset: llama-cpp-python's default is cpu_count/2 (llama.cpp's own tools "
                     "use the physical core count)")
    d = cfg.draft
    if d is not None and d.n_ctx is not None:
        diffs.append(f"draft n_ctx {d.n_ctx} used for the draft Llama")
    if cfg.rpc_servers:
        diffs.append(f"the RPC servers {','.join(cfg.rpc_servers)} are not registered by this script, so the layers "
                     "-ngl/-ts place on them land elsewhere: use the llama-server line or `moetui run --rpc`")
    head = [f"# moetui export for {_target_line()}"]
    head += [f"# differs: {x}" for x in diffs]
    head += [f"# warning: {w}" for w in _path_warnings(cfg)]
    head += [f"# note: {n}" for n in cfg.notes]

    def kwargs(n_gpu_layers: int, n_ctx: int) -> str:
        kw = llama_kwargs(cfg, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx)  # the worker's own mapping
        kw.pop("flash_attn")  # FLASH_ATTN, auto included, is set on the context params by the hooks
        return "".join(f"        {k}={v!r},\n" for k, v in kw.items())

    lines = [
        "#!/usr/bin/env python3",
        *head,
        "import contextlib",
        "import ctypes",
        "",
        "import llama_cpp",
        "from llama_cpp import llama_cpp as L",
        "",
        f"MODEL = {cfg.model_path!r}",
        f"OVERRIDES = {[(o.pattern, o.device) for o in cfg.overrides]!r}  # llama.cpp -ot PATTERN=BUFFER_TYPE",
        f"LOAD_MODE = {LOAD_MODES[cfg.load_mode]}  # -lm {cfg.load_mode}",
        f"FLASH_ATTN = {FLASH_ATTN[cfg.flash_attn]}  # -fa {cfg.flash_attn}",
        f"REPACK = {cfg.repack!r}" + ("" if cfg.repack else "  # --no-repack"),
        f"NO_HOST = {cfg.no_host!r}" + ("  # --no-host" if cfg.no_host else ""),
        _HOOKS,
        "",
        "def load():",
        "    draft = None",
    ]
    if d is not None and d.kind == "ngram":
        if d.draft_min:
            lines += ["    try:  # moetui's prompt lookup honours draft_min; llama-cpp-python's has only the maximum",
                      "        from moetui.runtime.speculative import PromptLookupDraft",
                      f"        draft = PromptLookupDraft(draft_max={d.draft_max}, draft_min={d.draft_min})",
                      "    except ImportError:",
                      "        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding",
                      f"        draft = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens={d.draft_max})"]
        else:
            lines += ["    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding",
                      f"    draft = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens={d.draft_max})"]
    elif d is not None:
        lines += [
            f"    draft_overrides = _override_array({[(o.pattern, o.device) for o in d.overrides]!r})",
            "    with _llama_params(draft_overrides, LOAD_MODE, FLASH_ATTN):",
            "        draft_llm = llama_cpp.Llama(",
            f"        model_path={d.model_path!r},",
            kwargs(d.n_gpu_layers, d.n_ctx if d.n_ctx is not None else cfg.n_ctx).rstrip("\n"),
            "        verbose=True,",
            "    )",
            "    draft_llm._moetui_overrides = draft_overrides  # llama.cpp keeps pointers into it",
            "    try:  # llama-cpp-python has no draft-model speculation of its own; moetui's runtime has one",
            "        from moetui.runtime.speculative import ModelDraft",
            f"        draft = ModelDraft(draft_llm, draft_max={d.draft_max}, draft_min={d.draft_min})",
            "    except ImportError:",
            "        import sys",
            "        print('moetui is not installed: running without the draft model', file=sys.stderr)",
        ]
    lines += [
        "    overrides = _override_array(OVERRIDES)",
        "    with _llama_params(overrides, LOAD_MODE, FLASH_ATTN):",
        "        llm = llama_cpp.Llama(",
        "        model_path=MODEL,",
        kwargs(cfg.n_gpu_layers, cfg.n_ctx).rstrip("\n"),
        "        draft_model=draft,",
        "        verbose=True,  # llama.cpp's log shows the placement (buffer sizes, overridden tensors)",
        "    )",
        "    llm._moetui_overrides = overrides  # llama.cpp keeps pointers into it: keep it alive",
        "    return llm",
        "",
        "",
        'if __name__ == "__main__":',
        "    llm = load()",
        f"    out = llm({prompt!r}, max_tokens={max_tokens}, temperature=0.0)",
        '    print(out["choices"][0]["text"])',
        "",
    ]
    return "\n".join(lines)
