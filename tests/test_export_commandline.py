"""RunConfig -> llama.cpp command lines (for the vendored llama.cpp and for older flag spellings), and
back: export -> parse gives the same config. The real binaries run these lines in
test_export_llama_tools.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moetui.config import DraftConfig, RunConfig, TensorOverride
from moetui.errors import ConfigError
from moetui.export.commandline import export_command
from moetui.export.flags import ToolFlags, parse_help, vendored_flags
from moetui.export.parse import parse_server_argv, parse_server_text
from moetui.sizing.overrides import ALL_PARTS, cpu_expert_overrides, n_cpu_moe_overrides


def _value(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def test_defaults_spell_every_setting(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    cmd = export_command(RunConfig(model_path=str(model)), "server", vendored_flags("server"))
    a = cmd.argv
    assert a[0] == "llama-server"
    assert _value(a, "-m") == str(model) and _value(a, "-c") == "4096" and _value(a, "-ngl") == "all"
    assert _value(a, "-fa") == "auto" and _value(a, "-ctk") == "f16" and _value(a, "-lm") == "auto"
    assert _value(a, "-b") == "2048" and _value(a, "-ub") == "512" and _value(a, "-np") == "1"
    assert _value(a, "-fit") == "off"
    assert "-t" not in a and "-ot" not in a and "-md" not in a
    assert cmd.warnings == [] and "0c1e57098" in cmd.target


def test_whole_leading_layers_become_n_cpu_moe() -> None:
    cfg = RunConfig(model_path="m.gguf", overrides=cpu_expert_overrides({i: ALL_PARTS for i in range(3)}))
    for tool in ("server", "bench"):
        a = export_command(cfg, tool, vendored_flags(tool)).argv
        assert _value(a, "-ncmoe") == "3" and "-ot" not in a


def test_other_placements_are_one_ot_in_each_tools_syntax() -> None:
    cfg = RunConfig(model_path="m.gguf", overrides=cpu_expert_overrides({1: ALL_PARTS, 3: ALL_PARTS, 2: {"down"}}),
                    split_mode="row", tensor_split=[3.0, 1.0], main_gpu=1)
    server = export_command(cfg, "server", vendored_flags("server")).argv
    bench = export_command(cfg, "bench", vendored_flags("bench")).argv
    pats = [o.to_arg() for o in cfg.overrides]
    assert _value(server, "-ot") == ",".join(pats)
    assert _value(bench, "-ot") == ";".join(pats)  # llama-bench: `,` would mean several test values
    assert _value(server, "-ts") == "3,1" and _value(bench, "-ts") == "3/1"
    assert _value(server, "-sm") == "row" and _value(server, "-mg") == "1"
    assert server.count("-ot") == 1


def test_inexpressible_settings_are_commented_never_silent() -> None:
    cfg = RunConfig(model_path="m.gguf", n_threads=4, n_threads_batch=8,
                    overrides=[TensorOverride(r"blk\.[0-9]{1,2}\.ffn_up_exps", "CPU")],
                    draft=DraftConfig(model_path="d.gguf", n_ctx=1024))
    server = export_command(cfg, "server", vendored_flags("server"))
    assert "-ot" not in server.argv
    assert any("{1,2}" in d and "left out" in d for d in server.differences)
    assert any("draft n_ctx 1024" in d for d in server.differences)
    bench = export_command(cfg, "bench", vendored_flags("bench"))
    assert any("n_threads_batch 8" in d for d in bench.differences)
    assert any("speculative" in d for d in bench.differences)
    text = server.render()
    assert "# differs: " in text and text.count("\n# differs: ") == len(server.differences)


def test_missing_paths_are_exported_with_a_warning() -> None:
    cfg = RunConfig(model_path="/nowhere/m.gguf", draft=DraftConfig(model_path="/nowhere/d.gguf"))
    cmd = export_command(cfg, "server", vendored_flags("server"))
    assert _value(cmd.argv, "-m") == "/nowhere/m.gguf"
    assert len(cmd.warnings) == 2 and "does not exist" in cmd.render()


def test_speculative_settings() -> None:
    draft = DraftConfig(model_path="d.gguf", n_gpu_layers=3, draft_max=8, draft_min=2,
                        overrides=[TensorOverride(r"blk\.0\.ffn_up\.weight", "CPU")])
    a = export_command(RunConfig(model_path="m.gguf", draft=draft), "server", vendored_flags("server")).argv
    assert _value(a, "-md") == "d.gguf" and _value(a, "-ngld") == "3"
    assert _value(a, "-otd") == r"blk\.0\.ffn_up\.weight=CPU"
    assert _value(a, "--spec-draft-n-max") == "8" and _value(a, "--spec-draft-n-min") == "2"
    assert _value(a, "--spec-type") == "draft-simple"
    ng = export_command(RunConfig(model_path="m.gguf", draft=DraftConfig(kind="ngram", draft_max=5)), "server",
                        vendored_flags("server"))
    assert _value(ng.argv, "--spec-type") == "ngram-simple" and _value(ng.argv, "--spec-ngram-simple-size-m") == "5"
    assert any("1-token" in d for d in ng.differences)


OLD_HELP = """
-m,    --model FNAME           model path
-c,    --ctx-size N            size of the prompt context
-ngl,  --n-gpu-layers N        number of layers to store in VRAM
-fa,   --flash-attn            enable Flash Attention (default: disabled)
-ctk,  --cache-type-k TYPE     KV cache data type for K
-ctv,  --cache-type-v TYPE     KV cache data type for V
-b, -ub, -t, -tb
--mlock                        force system to keep model in RAM
--no-mmap                      do not memory-map model
-ot,   --override-tensor       override tensor buffer type
-md,   --model-draft FNAME     draft model
-ngld, --n-gpu-layers-draft N
--draft-max N                  number of tokens to draft
--draft-min N
-np,   --parallel N
"""


def test_older_flag_spellings() -> None:
    flags = ToolFlags("server", "/opt/old/llama-server", parse_help(OLD_HELP), "llama-server b4000",
                      ngl_all=False, fa_takes_value=False)
    cfg = RunConfig(model_path="m.gguf", flash_attn="on", load_mode="mlock",
                    draft=DraftConfig(model_path="d.gguf", draft_max=4))
    a = export_command(cfg, "server", flags).argv
    assert a[0] == "/opt/old/llama-server"
    assert _value(a, "-ngl") == "999" and "-fa" in a and a[a.index("-fa") + 1] == "-ctk"
    assert "--no-mmap" in a and "--mlock" in a and "-lm" not in a and "-fit" not in a
    assert _value(a, "--draft-max") == "4" and "--spec-type" not in a
    auto = export_command(RunConfig(model_path="m.gguf"), "server", flags)
    assert "-fa" not in auto.argv
    assert any("flash_attn auto" in d for d in auto.differences)
    assert any("load mode auto" in d for d in auto.differences)


ROUND_TRIP = [
    RunConfig(model_path="/m/q.gguf"),
    RunConfig(model_path="/m/my model's $dir/ü.gguf", n_ctx=0, n_gpu_layers=12, flash_attn="on",
              cache_type_k="q8_0", cache_type_v="q4_0", n_threads=6, n_threads_batch=12, n_batch=1024,
              n_ubatch=256, load_mode="mmap+mlock", n_parallel=3, seed=42, notes=["tuned: 31.2 tok/s"],
              overrides=cpu_expert_overrides({0: ALL_PARTS, 1: ALL_PARTS})),
    RunConfig(model_path="/m/q.gguf", split_mode="row", main_gpu=1, tensor_split=[0.75, 0.25],
              overrides=cpu_expert_overrides({2: ALL_PARTS, 5: {"up", "down"}}) + [TensorOverride("output", "CUDA0")],
              draft=DraftConfig(model_path="/m/d.gguf", n_gpu_layers=0, draft_max=6, draft_min=1,
                                overrides=[TensorOverride(r"blk\.0\.", "CPU")])),
    RunConfig(model_path="/m/q.gguf", split_mode="none", draft=DraftConfig(kind="ngram", draft_max=7)),
]


@pytest.mark.parametrize("cfg", ROUND_TRIP, ids=range(len(ROUND_TRIP)))
def test_export_then_parse_gives_the_same_config(cfg: RunConfig) -> None:
    cmd = export_command(cfg, "server", vendored_flags("server"))
    assert parse_server_text(cmd.render("posix")) == cfg
    assert parse_server_argv(cmd.argv, cfg.notes) == cfg


def test_n_cpu_moe_overrides_parse_back_to_the_same_placement() -> None:
    cfg = RunConfig(model_path="m.gguf", overrides=n_cpu_moe_overrides(2))
    back = parse_server_argv(export_command(cfg, "server", vendored_flags("server")).argv)
    assert back.expert_layers_on_cpu() == cfg.expert_layers_on_cpu() == {0: set(ALL_PARTS), 1: set(ALL_PARTS)}


def test_parse_rejects_what_it_does_not_know() -> None:
    with pytest.raises(ConfigError, match="--rope-scale"):
        parse_server_argv(["llama-server", "-m", "x.gguf", "--rope-scale", "2"])
    with pytest.raises(ConfigError, match="-m MODEL"):
        parse_server_argv(["llama-server", "-c", "10"])
    with pytest.raises(ConfigError):
        parse_server_argv(["llama-server", "-m", "x", "-c", "lots"])
    with pytest.raises(ConfigError):
        parse_server_argv(["llama-server", "-m", "x", "-fa", "maybe"])


def _moetui(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", *args], check=False, capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})  # no llama-server on PATH: vendored flags


def test_cli_export_command_lines_and_config_round_trip(tiny_moe: Path, tmp_path: Path) -> None:
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=1024, overrides=cpu_expert_overrides({1: ALL_PARTS}))
    cfg.save(tmp_path / "c.json")
    p = _moetui("export", str(tiny_moe), "--config", str(tmp_path / "c.json"), "--tool", "server", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert parse_server_text(p.stdout) == cfg
    p = _moetui("export", str(tiny_moe), "--config", str(tmp_path / "c.json"), "--tool", "config", cwd=tmp_path)
    (tmp_path / "again.json").write_text(p.stdout)
    assert RunConfig.load(tmp_path / "again.json") == cfg
    p = _moetui("export", str(tiny_moe), "--json", "--tool", "bench", "--shell", "powershell", cwd=tmp_path)
    import json
    d = json.loads(p.stdout)
    assert d["tool"] == "bench" and d["argv"][0] == "llama-bench" and d["shell"] == "powershell"


def test_cli_missing_model_warns_and_bad_config_is_one_line(tmp_path: Path) -> None:
    p = _moetui("export", "/not/yet/there.gguf", "--tool", "server", cwd=tmp_path)
    assert p.returncode == 0 and "warning" in p.stderr and "/not/yet/there.gguf" in p.stdout
    (tmp_path / "bad.json").write_text("{not json")
    p = _moetui("export", "x.gguf", "--config", str(tmp_path / "bad.json"), cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    p = _moetui("export", "x.gguf", "--binary", str(tmp_path / "nope"), cwd=tmp_path)
    assert p.returncode == 2 and "no such llama.cpp binary" in p.stderr


def test_older_llama_bench_spellings() -> None:
    old = "-m, --model <filename>\n-fa, --flash-attn <0|1>\n-mmp, --mmap <0|1>\n-ngl, -ot, -t, -b, -ub, -ctk, -ctv, -p, -n"
    flags = ToolFlags("bench", "llama-bench", parse_help(old), "llama-bench b5000", fa_numeric=True)
    a = export_command(RunConfig(model_path="m.gguf", flash_attn="on", load_mode="none"), "bench", flags).argv
    assert _value(a, "-fa") == "1" and _value(a, "-mmp") == "0" and "-lm" not in a
    cmd = export_command(RunConfig(model_path="m.gguf", load_mode="mlock"), "bench", flags)
    assert "-fa" not in cmd.argv and any("mlock" in d for d in cmd.differences)


def test_a_hub_model_not_downloaded_is_named_as_such() -> None:
    from moetui.export.commandline import _path_warnings

    ref = "me/never-GGUF:Q4_K_M"
    warnings = _path_warnings(RunConfig(model_path=ref))
    assert warnings == [f"model {ref} is not downloaded: `moetui models download {ref}` fetches it; then export "
                        "again for its path"]
    assert _path_warnings(RunConfig(model_path="/nope/x.gguf")) == ["model /nope/x.gguf does not exist (yet)"]
