"""`moetui run MODEL [--config FILE] [--prompt TEXT]`: generate or chat in an isolated worker, tokens on
stdout, live stats on stderr. Without --prompt: a chat REPL over stdin (Ctrl-C stops a reply, Ctrl-D
quits). The config options below are shared with `moetui bench` and applied on top of --config."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from moetui.cli.argtypes import finite_float
from moetui.cli.output import printable
from moetui.cli.settings_args import add_settings_arguments, announce, config_in_force, rig_for, settings_from_args
from moetui.config import DraftConfig, RunConfig, TensorOverride
from moetui.config.llama_flags import add_llama_arguments, llama_changes
from moetui.runtime.client import DoneEvent, ErrorEvent, ModelWorker, StatsEvent, TokenEvent
from moetui.sizing.overrides import LLAMA_EXPS_REGEX, n_cpu_moe_overrides
from moetui.hardware.rpc import parse_endpoints
from moetui.hub.cache import local_model_file
from moetui.errors import ConfigError, WorkerError
from moetui.sizing.settings import Settings


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="GGUF file (overrides the config's model_path)")
    p.add_argument("--config", metavar="FILE", help="a moetui RunConfig JSON file")
    add_settings_arguments(p, rig_help="'auto': the model runs on this machine")
    g = p.add_argument_group("llama.cpp settings (applied on top of --config or the config in force; llama.cpp's "
                             "flag names)")
    add_llama_arguments(g)
    g.add_argument("-ot", "--override-tensor", action="append", dest="ot", metavar="PATTERN=DEV",
                   help="tensor buffer override (repeatable; comma-separated lists too)")
    g.add_argument("-ncmoe", "--n-cpu-moe", type=int, dest="n_cpu_moe", metavar="N",
                   help="keep the experts of the first N layers in RAM")
    g.add_argument("-cmoe", "--cpu-moe", action="store_true", help="keep all experts in RAM")
    g.add_argument("--lookup", action="store_true", help="prompt-lookup (n-gram) speculative decoding, no draft model")
    g.add_argument("--draft-max", "--spec-draft-n-max", type=int, dest="draft_max")
    g.add_argument("--draft-min", "--spec-draft-n-min", type=int, dest="draft_min")
    g.add_argument("-ngld", "--n-gpu-layers-draft", type=int, dest="draft_ngl")


def config_from_args(args: argparse.Namespace, *, planned: bool = False, prefer_tuned: bool = False) -> RunConfig:
    """--config; else (planned) the config in force for the settings on this rig (moetui.resolver: the
    profile `moetui tune` saved when prefer_tuned and it answers the settings, else the plan), said on
    stderr with why; else llama.cpp's defaults. The settings and the llama.cpp flags on top."""
    args.model = local_model_file(args.model)  # a hub model from the HF cache; one not downloaded says so
    settings = settings_from_args(args)
    if args.config:
        cfg = RunConfig.load(args.config, model_path=args.model)  # MODEL overrides the file's model_path
        if planned:
            from moetui.resolver import ActiveConfig, ConfigSource  # noqa: PLC0415  (the sizing core: not for `bench`)

            announce(ActiveConfig(cfg, ConfigSource.CHOSEN, f"the config file {args.config}"), args.model)
    elif planned:
        cfg = config_in_force(args, settings, rig_for(settings, measuring=True), use_tuned=prefer_tuned).config
    else:
        cfg = RunConfig(model_path=args.model)
    changes: dict[str, Any] = {"model_path": args.model, **settings_changes(settings)}
    changes.update(llama_changes(args))
    if args.n_batch is not None and changes.get("n_ubatch") is None and cfg.n_ubatch > args.n_batch:
        changes["n_ubatch"] = args.n_batch  # like llama.cpp: the ubatch follows a smaller batch
    overrides = list(cfg.overrides)
    if args.ot:
        overrides += _parse_ot(args.ot)
    if args.cpu_moe:
        overrides.append(TensorOverride(LLAMA_EXPS_REGEX, "CPU"))
    if args.n_cpu_moe:
        overrides += n_cpu_moe_overrides(args.n_cpu_moe)
    changes["overrides"] = overrides
    draft = cfg.draft
    if settings.draft_path and (draft is None or draft.model_path != settings.draft_path):
        draft = DraftConfig(model_path=settings.draft_path)
    elif args.lookup:
        draft = DraftConfig(kind="ngram")
    if draft is not None:
        for name, v in (("draft_max", args.draft_max), ("draft_min", args.draft_min), ("n_gpu_layers", args.draft_ngl)):
            if v is not None:
                draft = DraftConfig(**{**draft.__dict__, name: v})
    changes["draft"] = draft
    return cfg.replace(**{k: v for k, v in changes.items() if v is not None or k == "draft"})


def _parse_ot(values: list[str]) -> list[TensorOverride]:
    out = []
    for value in values:
        for item in value.split(","):
            pattern, sep, dev = item.rpartition("=")
            if not sep or not pattern or not dev:
                raise ConfigError(f"-ot wants PATTERN=DEVICE, not {item!r}")
            out.append(TensorOverride(pattern, dev))
    return out


def settings_changes(settings: Settings) -> dict[str, Any]:
    """The RunConfig fields the settings fix whatever config is in force: the context (per sequence in the
    settings, for all of them in llama.cpp's n_ctx), the forced KV type and ubatch, the RPC servers."""
    out: dict[str, Any] = {"n_ctx": settings.n_ctx * settings.n_parallel if settings.n_ctx else None,
                           "n_ubatch": settings.n_ubatch}
    if settings.n_ubatch:
        out["n_batch"] = max(2048, settings.n_ubatch)
    if settings.cache_type:
        out["cache_type_k"] = out["cache_type_v"] = settings.cache_type
    if settings.rpc_hosts:
        out["rpc_servers"] = [e.address for e in parse_endpoints(list(settings.rpc_hosts))]
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("-p", "--prompt", help="one chat turn with this message, then exit (default: interactive chat "
                   "on stdin); with --raw, a plain completion of this text")
    p.add_argument("--raw", action="store_true", help="-p is plain text to continue, no chat template")
    p.add_argument("-n", "--n-predict", type=int, default=256, dest="max_tokens", help="max tokens per reply")
    p.add_argument("--temp", type=finite_float(0.0, 100.0), default=0.8, help="temperature (0: greedy)")
    p.add_argument("--repeat-penalty", type=finite_float(0.0, 100.0), default=1.0)
    p.add_argument("--no-stats", action="store_true", help="no stats on stderr")
    p.add_argument("--untuned", action="store_true", help="ignore the profile `moetui tune` saved for this model: run the plan")


class _StatsPrinter:
    """Live stats on one rewritten stderr line on a terminal; only the final line otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.shown = False

    def live(self, stats: Any) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r\x1b[2K" + stats.line())
            sys.stderr.flush()
            self.shown = True

    def final(self, stats: Any) -> None:
        if not self.enabled:
            return
        if self.tty and self.shown:
            sys.stderr.write("\r\x1b[2K")
        sys.stderr.write(f"[{stats.line()}]\n")
        sys.stderr.flush()
        self.shown = False


def _stream(worker: Any, events: Any, printer: _StatsPrinter) -> str:
    text = []
    try:
        for ev in events:
            if isinstance(ev, TokenEvent):
                sys.stdout.write(printable(ev.text, keep_newlines=True))  # no escape sequence reaches the terminal
                sys.stdout.flush()
                text.append(ev.text)
            elif isinstance(ev, StatsEvent):
                printer.live(ev.stats)
            elif isinstance(ev, DoneEvent):
                sys.stdout.write("\n")
                printer.final(ev.stats)
                if ev.cancelled:
                    print("(stopped)", file=sys.stderr)
            elif isinstance(ev, ErrorEvent):
                sys.stdout.write("\n")
                if ev.log_tail:
                    print(printable(ev.log_tail, keep_newlines=True), file=sys.stderr)
                raise ev.error
    except KeyboardInterrupt:
        # Ctrl-C: stop this reply, keep the model loaded; the stream drains to its DoneEvent
        worker.stop()
        rest = _stream(worker, events, printer)  # nothing left if the interrupt landed inside the stream
        if not worker.alive:  # it did not stop when asked: hung, and killed (client.CANCEL_GRACE_S)

            raise WorkerError(f"the model worker did not stop after Ctrl-C and was killed; log: {worker.log_path}",
                              kind="hang")
        print("(stopped)", file=sys.stderr)
        return "".join(text) + rest
    return "".join(text)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, planned=True, prefer_tuned=not args.untuned)
    printer = _StatsPrinter(not args.no_stats)
    sampling = {"temperature": args.temp, "repeat_penalty": args.repeat_penalty}
    with ModelWorker() as worker:
        info = worker.start(cfg)
        if not args.no_stats:
            b = info.buffers
            weights = ", ".join(f"{d} {n / 2**20:.0f} MiB" for d, n in b.weights_by_device().items())
            print(f"[loaded in {info.load_s:.1f} s: weights {weights}; experts RAM/VRAM {b.experts_ram}/{b.experts_vram}; "
                  f"ctx {info.n_ctx}; log {info.log_path}]", file=sys.stderr)
        if info.load_mode_fallback:
            print(f"moetui: note: {info.load_mode_fallback}", file=sys.stderr)
        if not args.no_stats and info.chat_template and not args.raw:
            print(f"[chat {info.chat_template}]", file=sys.stderr)
        if args.prompt is not None:
            events = (worker.generate(args.prompt, max_tokens=args.max_tokens, **sampling) if args.raw else
                      worker.chat([{"role": "user", "content": args.prompt}], max_tokens=args.max_tokens, **sampling))
            _stream(worker, events, printer)
            return 0
        messages: list[dict[str, str]] = []
        interactive = sys.stdin.isatty()
        while True:
            try:
                if interactive:
                    sys.stderr.write("> ")
                    sys.stderr.flush()
                line = sys.stdin.readline()
            except KeyboardInterrupt:
                print(file=sys.stderr)
                return 0
            if not line:
                return 0
            line = line.rstrip("\n")
            if not line.strip():
                continue
            messages.append({"role": "user", "content": line})
            reply = _stream(worker, worker.chat(messages, max_tokens=args.max_tokens, **sampling), printer)
            messages.append({"role": "assistant", "content": reply})
