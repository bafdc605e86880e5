"""The one table of llama.cpp settings (moetui.config.llama_flags): every RunConfig setting has its row;
the exported line, its parse-back, `moetui run`'s flags and both llama-cpp-python keyword mappings (the
worker's and the exported script's) read it; --no-host, added as one row, reaches the exported lines and
the worker's load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from moetui.cli import build_parser
from moetui.cli.run_cmd import config_from_args
from moetui.config import RunConfig
from moetui.config.llama_flags import BY_FIELD, SETTINGS, llama_kwargs
from moetui.export.commandline import bench_command, server_command
from moetui.export.flags import vendored_flags
from moetui.export.parse import parse_server_argv
from moetui.export.python_snippet import python_snippet
from moetui.runtime.client import ModelWorker

# RunConfig fields that are not one llama.cpp value: written and read by their own code
STRUCTURED = {"model_path", "overrides", "draft", "notes"}


def test_every_setting_of_a_config_has_its_row() -> None:
    fields = {f.name for f in dataclasses.fields(RunConfig)} - STRUCTURED
    assert fields == set(BY_FIELD), "a RunConfig setting without a row in moetui.config.llama_flags (or a stale row)"
    for s in SETTINGS:
        assert s.since and s.help and (s.flag or s.long)
        assert s.tools and set(s.tools) <= {"server", "cli", "bench"}
        assert (s.bench is not None) == ("bench" in s.tools), s.field


def test_every_row_round_trips_through_the_server_line() -> None:
    """A config with every row away from its default: exported, parsed back, the same config."""
    cfg = RunConfig(model_path="m.gguf", n_ctx=1234, n_gpu_layers=7, split_mode="row", main_gpu=1,
                    tensor_split=[3.0, 1.0], flash_attn="on", cache_type_k="q8_0", cache_type_v="q4_0", n_threads=3,
                    n_threads_batch=5, n_batch=1024, n_ubatch=256, load_mode="none", repack=False, no_host=True,
                    seed=42, n_parallel=2, rpc_servers=["10.0.0.2:50052"])
    changed = {f for f in BY_FIELD if getattr(cfg, f) != getattr(RunConfig(model_path="m.gguf"), f)}
    assert changed == set(BY_FIELD)  # the test covers every row
    cmd = server_command(cfg, vendored_flags("server"))
    assert parse_server_argv(cmd.argv) == cfg
    assert "--no-host" in cmd.argv


def test_bench_spells_its_own_flags() -> None:
    cfg = RunConfig(model_path="m.gguf", repack=False, no_host=True)
    argv = bench_command(cfg, vendored_flags("bench")).argv
    assert argv[argv.index("--no-host") + 1] == "1" and argv[argv.index("--repack") + 1] == "0"


def test_one_keyword_mapping_for_the_worker_and_the_script() -> None:
    """The script's Llama(...) keywords are the worker's: -tb falls back to -t in both (it did not in the
    script), the seed is left out when random."""
    cfg = RunConfig(model_path="m.gguf", n_threads=3, cache_type_k="q8_0")
    kw = llama_kwargs(cfg)
    assert kw["n_threads_batch"] == 3 and kw["type_k"] == 8 and "seed" not in kw
    script = python_snippet(cfg)
    for k, v in kw.items():
        if k != "flash_attn":  # set on the context params by the script's hooks, "auto" included
            assert f"        {k}={v!r},\n" in script, k
    assert "NO_HOST = False" in script and "params.no_host = no_host" in script


def test_run_flags_come_from_the_table_and_no_host_reaches_the_load(tiny_moe: Path) -> None:
    args = build_parser(only="run").parse_args(["run", str(tiny_moe), "--no-host", "-nr", "-ctk", "q8_0", "-fa", "on",
                                                "-ctv", "q8_0"])
    cfg = config_from_args(args)
    assert cfg.no_host and not cfg.repack and cfg.cache_type_k == "q8_0"
    with ModelWorker() as worker:
        info = worker.start(cfg.replace(n_ctx=256))
    assert info.applied["no_host"] is True and info.applied["use_extra_bufts"] is False  # what llama.cpp got
    assert info.applied["type_k"] == 8
