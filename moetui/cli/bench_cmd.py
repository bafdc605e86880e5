"""`moetui bench MODEL [--config FILE] [--json] [-p 512] [-n 128] [-r 5]`: prompt processing (pp) and
generation (tg) tok/s measured like llama.cpp's llama-bench (see moetui.runtime.bench), median and
spread over the repetitions, in an isolated worker."""

from __future__ import annotations

import argparse

from moetui.cli.output import print_json, table
from moetui.cli.run_cmd import add_config_arguments, config_from_args
from moetui.errors import ConfigError
from moetui.model.gguf_header import read_file_header
from moetui.runtime.client import ModelWorker


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens for pp (0: skip)")
    p.add_argument("-n", "--n-gen", type=int, default=128, help="tokens for tg (0: skip)")
    p.add_argument("-r", "--repetitions", type=int, default=5, dest="reps")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    if args.reps < 1 or args.n_prompt < 0 or args.n_gen < 0 or (args.n_prompt == 0 and args.n_gen == 0):
        raise ConfigError("need -r >= 1 and at least one of -p / -n above 0")
    cfg = config_from_args(args)
    read_file_header(cfg.model_path)  # a truncated or broken file said in moetui's words, not llama.cpp's raw log
    if args.ctx is None or cfg.n_ctx < args.n_prompt + args.n_gen:
        # like llama-bench, size the context to the test unless -c asks for more
        cfg = cfg.replace(n_ctx=args.n_prompt + args.n_gen)
    with ModelWorker() as w:
        info = w.start(cfg)
        r = w.bench(args.n_prompt, args.n_gen, args.reps)
    if args.json:
        d = r.to_dict()
        d.update(model=cfg.model_path, load_s=info.load_s, buffers=info.buffers.to_dict())
        print_json(d)
        return 0
    rows = []
    for name, n, xs in (("pp", args.n_prompt, r.pp_tok_s), ("tg", args.n_gen, r.tg_tok_s)):
        if xs:
            med, sd = (r.pp_median, r.pp_stdev) if name == "pp" else (r.tg_median, r.tg_stdev)
            rows.append([f"{name}{n}", f"{med:.2f} ± {sd:.2f}", f"{min(xs):.2f}", f"{max(xs):.2f}", len(xs)])
    print(f"{cfg.model_path}: threads {r.n_threads}/{r.n_threads_batch}, n_batch {r.n_batch}, n_ubatch {r.n_ubatch}, "
          f"fa {r.flash_attn}, kv {r.cache_type_k}/{r.cache_type_v}")
    print(table(rows, ["test", "t/s median ± sd", "min", "max", "reps"]))
    return 0
