"""RunConfig -> llama-server / llama-cli / llama-bench argv, each in its own syntax.

Every setting of the config is either written as the tool's flag, or — where the tool (or this release of
it) cannot express it — left out or approximated with a comment line saying exactly what differs. Never a
silently different command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from moetui.config import RunConfig, TensorOverride
from moetui.config.llama_flags import row
from moetui.export import quoting
from moetui.export.flags import ToolFlags, detect_flags
from moetui.hub.listing import looks_like_hub_ref
from moetui.model.chat_template import chat_template_for_file
from moetui.sizing.overrides import layers_from_overrides, n_cpu_moe_equivalent

NGL_ALL_FALLBACK = "999"  # releases without `-ngl all`: more layers than any model has
NGRAM_SIZE_N = 2  # llama-cpp-python's LlamaPromptLookupDecoding(max_ngram_size=2)
NOTE_PREFIX = "note: "


@dataclass
class ExportedCommand:
    tool: str  # server | cli | bench
    argv: list[str]
    target: str  # which llama.cpp the line is for
    differences: list[str] = field(default_factory=list)  # what the line does not express exactly
    warnings: list[str] = field(default_factory=list)  # e.g. a path that does not exist (yet)
    notes: list[str] = field(default_factory=list)  # the config's notes, carried as comments

    def comments(self) -> list[str]:
        out = [f"for {self.target}"]
        out += [f"differs: {d}" for d in self.differences]
        out += [f"warning: {w}" for w in self.warnings]
        out += [NOTE_PREFIX + n for n in self.notes]
        return out

    def render(self, shell: str = "posix") -> str:
        lines = [quoting.comment(c, shell) for c in self.comments()]
        if shell == "powershell" and any('"' in a for a in self.argv):
            lines.append(quoting.comment("PowerShell 7.3+ needed: earlier releases drop the double quotes "
                                         "inside arguments passed to programs", shell))
        lines.append(quoting.join(self.argv, shell))
        return "\n".join(lines)

    def to_dict(self, shell: str = "posix") -> dict[str, object]:
        return {"tool": self.tool, "argv": self.argv, "target": self.target, "differences": self.differences,
                "warnings": self.warnings, "notes": self.notes, "shell": shell, "command": self.render(shell)}


def _num(x: float) -> str:
    return f"{x:g}"


def _path_warnings(cfg: RunConfig) -> list[str]:
    out = []
    paths = [("model", cfg.model_path)]
    if cfg.draft and cfg.draft.kind == "model" and cfg.draft.model_path:
        paths.append(("draft model", cfg.draft.model_path))
    for what, p in paths:
        if os.path.exists(p):
            continue
        if looks_like_hub_ref(p):
            out.append(f"{what} {p} is not downloaded: `moetui models download {p}` fetches it; then export "
                       "again for its path")
        else:
            out.append(f"{what} {p} does not exist (yet)")
    return out


def _f(field: str, flags: ToolFlags) -> str:
    """The spelling of a RunConfig field's flag for this tool (moetui.config.llama_flags)."""
    r = row(field)
    return (r.bench if flags.tool == "bench" else r.flag or r.long) or ""


def _value(field: str, cfg: RunConfig, flags: ToolFlags) -> list[str]:
    """[flag, value] of a plain single-valued setting, spelled for this tool."""
    return [_f(field, flags), str(getattr(cfg, field))]


def _ngl(n: int, flags: ToolFlags) -> str:
    if n >= 0:
        return str(n)
    if flags.tool == "bench":
        return "-1"  # llama-bench passes it to llama_model_params: negative means every layer
    return "all" if flags.ngl_all else NGL_ALL_FALLBACK


def _placement(overrides: list[TensorOverride], flags: ToolFlags, sep: str, diffs: list[str],
               ot_flag: str = "-ot", ncmoe_flag: str | None = "-ncmoe") -> list[str]:
    """The expert placement: `--n-cpu-moe N` when it is exactly that, else one `-ot` with every override."""
    if not overrides:
        return []
    cpu = layers_from_overrides(overrides)
    n = n_cpu_moe_equivalent(cpu) if cpu is not None else None
    if n and ncmoe_flag and flags.has(ncmoe_flag):
        return [ncmoe_flag, str(n)]
    if not flags.has(ot_flag):
        diffs.append(f"this {flags.tool} has no {ot_flag}: the tensor overrides "
                     f"{', '.join(o.to_arg() for o in overrides)} are left out")
        return []
    kept = []
    for o in overrides:
        bad = [c for c in (",", sep) if c in o.pattern]
        if bad:
            diffs.append(f"override {o.to_arg()} is left out: its pattern contains {bad[0]!r}, which "
                         f"{flags.tool}'s {ot_flag} uses as a separator")
            continue
        kept.append(o.to_arg())
    return [ot_flag, sep.join(kept)] if kept else []


def _split(cfg: RunConfig, flags: ToolFlags, ts_sep: str) -> list[str]:
    out: list[str] = []
    if cfg.split_mode != "layer":
        out += _value("split_mode", cfg, flags)
    if cfg.main_gpu != 0 or cfg.split_mode == "none":
        out += _value("main_gpu", cfg, flags)
    if cfg.tensor_split:
        out += [_f("tensor_split", flags), ts_sep.join(_num(x) for x in cfg.tensor_split)]
    return out


def _flash_attn(value: str, flags: ToolFlags, diffs: list[str]) -> list[str]:
    if flags.fa_numeric:
        if value == "auto":
            diffs.append("flash_attn auto: this llama-bench has only -fa 0|1; left at its default (off)")
            return []
        return [_f("flash_attn", flags), "1" if value == "on" else "0"]
    if flags.fa_takes_value:
        return [_f("flash_attn", flags), value]
    if value == "on":
        return [_f("flash_attn", flags)]
    if value == "auto":
        diffs.append("flash_attn auto: this release has no auto setting; flash attention stays off")
    return []


def _load_mode(mode: str, flags: ToolFlags, diffs: list[str]) -> list[str]:
    if flags.has(_f("load_mode", flags)):
        return [_f("load_mode", flags), mode]
    if flags.tool == "bench":  # older llama-bench: -mmp 0|1
        if mode in ("auto", "mmap"):
            return []
        if flags.has("-mmp") and mode == "none":
            return ["-mmp", "0"]
        diffs.append(f"load mode {mode}: this llama-bench has only -mmp 0|1; left at its default (mmap)")
        return []
    legacy = {"auto": [], "mmap": [], "none": ["--no-mmap"], "mlock": ["--no-mmap", "--mlock"],
              "mmap+mlock": ["--mlock"], "dio": ["--direct-io"]}[mode]
    missing = [f for f in legacy if not flags.has(f)]
    if missing:
        diffs.append(f"load mode {mode}: this {flags.tool} has no {' '.join(missing)}; left at its default (mmap)")
        return []
    if mode == "auto":
        diffs.append("load mode auto: this release has no auto mode; its default is mmap")
    return legacy


def _repack(cfg: RunConfig, flags: ToolFlags, diffs: list[str]) -> list[str]:
    if cfg.repack:
        return []  # llama.cpp's default
    spelled = _f("repack", flags)
    if flags.has(spelled):
        return [spelled, "0"] if flags.tool == "bench" else [spelled]
    diffs.append(f"weight repacking off: this {flags.tool} has no --no-repack; it repacks (which crashed "
                 "on the machine this config was made for)")
    return []


def _no_host(cfg: RunConfig, flags: ToolFlags, diffs: list[str]) -> list[str]:
    if not cfg.no_host:
        return []  # llama.cpp's default
    spelled = _f("no_host", flags)
    if flags.has(spelled):
        return [spelled, "1"] if flags.tool == "bench" else [spelled]
    diffs.append(f"--no-host: this {flags.tool} has no such flag; it uses the GPU backend's host buffer")
    return []


def _rpc(cfg: RunConfig, flags: ToolFlags, diffs: list[str]) -> list[str]:
    """`--rpc host:port,...`, first: llama.cpp registers the servers' devices while parsing it, and the
    `-ot` that follows may name their buffers (RPC0[host:port])."""
    if not cfg.rpc_servers:
        return []
    flag = flags.first(_f("rpc_servers", flags), "-rpc")
    if flag is None and not flags.help_text:  # the vendored table: the flag exists in builds with RPC
        flag = _f("rpc_servers", flags)
        diffs.append("--rpc needs llama.cpp built with -DGGML_RPC=ON (moetui rpc-server builds one)")
    if flag is None:
        diffs.append(f"this {flags.tool} was built without RPC (-DGGML_RPC=ON): the servers "
                     f"{','.join(cfg.rpc_servers)} and the layers placed on them are left out")
        return []
    return [flag, ",".join(cfg.rpc_servers)]


def _placement_and_kv(cfg: RunConfig, flags: ToolFlags, diffs: list[str], *, overrides_sep: str,
                      split_sep: str) -> list[str]:
    """Where the tensors go (-ot / --n-cpu-moe, tensor split), flash attention and the KV cache types: the
    same flags in every tool, joined with the tool's own separators (llama-bench splits values on commas)."""
    argv = _placement(cfg.overrides, flags, overrides_sep, diffs)
    argv += _split(cfg, flags, split_sep)
    argv += _flash_attn(cfg.flash_attn, flags, diffs)
    argv += _value("cache_type_k", cfg, flags) + _value("cache_type_v", cfg, flags)
    return argv


def _batches_and_loading(cfg: RunConfig, flags: ToolFlags, diffs: list[str]) -> list[str]:
    """Batch sizes, how the weights are loaded (mmap, mlock, ...) and CPU repacking: the same in every tool."""
    return [*_value("n_batch", cfg, flags), *_value("n_ubatch", cfg, flags), *_load_mode(cfg.load_mode, flags, diffs),
            *_repack(cfg, flags, diffs), *_no_host(cfg, flags, diffs)]


def _common(cfg: RunConfig, flags: ToolFlags, diffs: list[str]) -> list[str]:
    argv = ["-m", cfg.model_path, *_rpc(cfg, flags, diffs), *_value("n_ctx", cfg, flags),
            _f("n_gpu_layers", flags), _ngl(cfg.n_gpu_layers, flags)]
    argv += _placement_and_kv(cfg, flags, diffs, overrides_sep=",", split_sep=",")
    if cfg.n_threads is not None:
        argv += _value("n_threads", cfg, flags)
    if cfg.n_threads_batch is not None:
        argv += _value("n_threads_batch", cfg, flags)
    argv += _batches_and_loading(cfg, flags, diffs)
    if cfg.seed != -1:
        argv += _value("seed", cfg, flags)
    from moetui.model.inspect import header_has_swa  # noqa: PLC0415 (gguf: only when a line is built)

    if flags.has("--swa-full") and header_has_swa(cfg.model_path):
        # what moetui's runtime (llama-cpp-python) uses, same KV memory; llama.cpp refuses it
        # ("swa_full is not supported by this model") for a model without sliding-window layers
        argv.append("--swa-full")
    if flags.has("-fit"):
        argv += ["-fit", "off"]  # the config is already sized: llama.cpp must not change it
    argv += _speculative(cfg, flags, diffs)
    return argv


def _speculative(cfg: RunConfig, flags: ToolFlags, diffs: list[str]) -> list[str]:
    d = cfg.draft
    if d is None:
        return []
    out: list[str] = []
    n_max_flag = flags.first("--spec-draft-n-max", "--draft-max", "--draft-n", "--draft")
    n_min_flag = flags.first("--spec-draft-n-min", "--draft-min")
    if d.kind == "ngram":
        if not (flags.has("--spec-type") and flags.has("--spec-ngram-simple-size-m")):
            diffs.append("ngram (prompt lookup) speculative decoding: this release has no --spec-type "
                         "ngram-simple; left out")
            return []
        out += ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", str(NGRAM_SIZE_N),
                "--spec-ngram-simple-size-m", str(d.draft_max)]
        diffs.append(f"prompt lookup: llama-cpp-python's also falls back to 1-token matches; ngram-simple "
                     f"matches exactly {NGRAM_SIZE_N} tokens")
        if d.draft_min:
            diffs.append(f"draft_min {d.draft_min} has no ngram-simple equivalent; left out")
        return out
    if not flags.has("-md"):
        diffs.append(f"this {flags.tool} cannot run a draft model; speculative decoding with {d.model_path} left out")
        return []
    out += ["-md", str(d.model_path)]
    ngld = flags.first("-ngld")
    if ngld:
        out += [ngld, _ngl(d.n_gpu_layers, flags)]
    elif d.n_gpu_layers != -1:
        diffs.append(f"draft n_gpu_layers {d.n_gpu_layers}: no -ngld here; left out")
    if d.overrides:
        if flags.has("-otd"):
            out += _placement(d.overrides, flags, ",", diffs, ot_flag="-otd", ncmoe_flag=None)
        else:
            diffs.append("draft tensor overrides " + ", ".join(o.to_arg() for o in d.overrides)
                         + ": this release has no -otd; left out")
    if n_max_flag:
        out += [n_max_flag, str(d.draft_max)]
    if n_min_flag:
        out += [n_min_flag, str(d.draft_min)]
    elif d.draft_min:
        diffs.append(f"draft_min {d.draft_min}: no draft-min flag here; left out")
    if flags.has("--spec-type"):
        # without it this llama.cpp loads the draft but does not speculate with it
        out += ["--spec-type", "draft-simple"]
    if d.n_ctx is not None:
        ctxd = flags.first("-cd", "--ctx-size-draft")
        if ctxd:
            out += [ctxd, str(d.n_ctx)]
        else:
            diffs.append(f"draft n_ctx {d.n_ctx}: this release has no draft context flag; the draft gets "
                         f"the target's context ({cfg.n_ctx})")
    return out


def _chat_template(cfg: RunConfig, flags: ToolFlags, diffs: list[str]) -> list[str]:
    """The chat template moetui chats with (moetui.model.chat_template): nothing for the file's own, else
    the built-in's name the way this tool takes it. Nothing when the file is not there to read yet."""
    template = chat_template_for_file(cfg.model_path)
    if template is None:
        return []
    args, missing = template.server_args(flags.flags)
    if missing:
        diffs.append(missing)
    return args


def server_command(cfg: RunConfig, flags: ToolFlags) -> ExportedCommand:
    diffs: list[str] = []
    argv = [flags.binary, *_common(cfg, flags, diffs), *_chat_template(cfg, flags, diffs)]
    argv += _value("n_parallel", cfg, flags)  # the server's default is auto (several slots): say it
    return ExportedCommand("server", argv, flags.target, diffs, _path_warnings(cfg), list(cfg.notes))


def cli_command(cfg: RunConfig, flags: ToolFlags) -> ExportedCommand:
    diffs: list[str] = []
    argv = [flags.binary, *_common(cfg, flags, diffs), *_chat_template(cfg, flags, diffs)]
    if cfg.n_parallel != 1:
        diffs.append(f"n_parallel {cfg.n_parallel}: llama-cli runs one conversation; left out")
    return ExportedCommand("cli", argv, flags.target, diffs, _path_warnings(cfg), list(cfg.notes))


def bench_command(cfg: RunConfig, flags: ToolFlags, n_prompt: int = 512, n_gen: int = 128,
                  output: str | None = None) -> ExportedCommand:
    """llama-bench: `,` separates test values, so several -ot overrides are joined with `;` and a tensor
    split with `/`. It sizes its context to the test itself (-p/-n), and runs no draft model."""
    diffs: list[str] = []
    warnings = _path_warnings(cfg)
    if "," in cfg.model_path:
        # no quoting helps: llama-bench itself splits every -m value on commas
        warnings.append(f"llama-bench splits -m on commas, so this line fails for {cfg.model_path}: "
                        "link the model under a name without a comma (ln -s) and use that path")
    argv = [flags.binary, "-m", cfg.model_path, *_rpc(cfg, flags, diffs), _f("n_gpu_layers", flags),
            _ngl(cfg.n_gpu_layers, flags)]
    argv += _placement_and_kv(cfg, flags, diffs, overrides_sep=";", split_sep="/")
    if cfg.n_threads is not None:
        argv += _value("n_threads", cfg, flags)
    if cfg.n_threads_batch is not None and cfg.n_threads_batch != cfg.n_threads:
        diffs.append(f"n_threads_batch {cfg.n_threads_batch}: llama-bench uses -t for both prompt and decode")
    argv += _batches_and_loading(cfg, flags, diffs)
    argv += ["-p", str(n_prompt), "-n", str(n_gen)]
    if output:
        argv += ["-o", output]
    diffs.append(f"n_ctx {cfg.n_ctx}: llama-bench sizes the context to each test (-p {n_prompt}, -n {n_gen})")
    if cfg.draft is not None:
        diffs.append("llama-bench measures no speculative decoding: the draft settings are left out")
    if cfg.n_parallel != 1:
        diffs.append(f"n_parallel {cfg.n_parallel}: llama-bench runs one sequence; left out")
    return ExportedCommand("bench", argv, flags.target, diffs, warnings, list(cfg.notes))


BUILDERS = {"server": server_command, "cli": cli_command, "bench": bench_command}


def export_command(cfg: RunConfig, tool: str, flags: ToolFlags | None = None,
                   binary: str | None = None) -> ExportedCommand:
    """The command line for `tool` ("server", "cli", "bench"), for `flags` (default: what detect_flags
    finds: the binary given, the one on PATH, or the vendored llama.cpp)."""
    flags = flags or detect_flags(tool, binary)
    return BUILDERS[tool](cfg, flags)
