"""Issue 19, defects 8 and 9, and hostile paths through real shells: every line moetui prints for a
shell reaches the program byte for byte (bash, sh, dash), the `moetui tune` hint included; a llama-bench
line for a path with a comma (which llama-bench splits itself) says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moetui.config import RunConfig, TensorOverride
from moetui.export.commandline import export_command
from moetui.export.flags import vendored_flags
from moetui.export.quoting import join

SHELLS = [s for s in ("bash", "sh", "dash") if shutil.which(s)]
HOSTILE = ["$(touch PWNED)", "`touch PWNED`", "a b", "it's", 'say "hi"', "-rf", "--help", "naïve ☃ 模型",
           "semi;colon", "pipe|amp&", "glob*?[x]", "~user", "back\\slash", "new\nline", "tab\there", "!bang",
           "#hash", "a,b", "{brace,x}", "", "$HOME", "%PATH%"]


def _echo_argv(shell: str, line: str, cwd: Path, program: str) -> list[str]:
    """Run `line` in `shell` with `program` defined as a function printing its args NUL-separated."""
    script = f"{program}() {{ for a in \"$@\"; do printf '%s\\0' \"$a\"; done; }}\n{line}\n"
    out = subprocess.run([shell, "-c", script], capture_output=True, cwd=cwd, timeout=30, check=True)
    return out.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("tool", ["server", "cli", "bench"])
def test_exported_lines_for_hostile_paths(shell: str, tool: str, tmp_path: Path) -> None:
    cases = 0
    for name in HOSTILE:
        path = f"/models/{name}/m.gguf"
        cfg = RunConfig(model_path=path, overrides=[TensorOverride(r"blk\.(0|1)\.ffn_.*_exps\.", "CPU")])
        cmd = export_command(cfg, tool, vendored_flags(tool))
        argv = [cmd.argv[0].rsplit("/", 1)[-1], *cmd.argv[1:]]
        got = _echo_argv(shell, join(["llamatool", *argv[1:]]), tmp_path, "llamatool")
        assert got == argv[1:], (name, got)
        assert path in got
        assert not (tmp_path / "PWNED").exists()
        cases += 1
    assert cases == len(HOSTILE)


def test_bench_line_for_a_path_with_a_comma_warns() -> None:
    cmd = export_command(RunConfig(model_path="/m/a,b.gguf"), "bench")
    assert any("splits -m on commas" in w for w in cmd.warnings)
    assert "splits -m on commas" in cmd.render()
    assert not any("commas" in w for w in export_command(RunConfig(model_path="/m/a,b.gguf"), "server").warnings)
    assert not any("commas" in w for w in export_command(RunConfig(model_path="/m/ab.gguf"), "bench").warnings)


def test_bench_comma_warning_from_the_cli(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "moetui", "export", str(tmp_path / "a,b.gguf"), "--tool", "bench"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "splits -m on commas" in r.stderr


@pytest.mark.parametrize("shell", SHELLS[:1])
def test_tune_run_hint_is_shell_quoted(shell: str, tiny_moe: Path, tmp_path: Path) -> None:
    """Defect 8: pasting the `run it:` line of `moetui tune` for a path holding $(touch X) ran the command."""
    folder = tmp_path / "$(touch PWNED) it's"
    folder.mkdir()
    model = folder / "m.gguf"
    model.symlink_to(tiny_moe)
    r = subprocess.run([sys.executable, "-m", "moetui", "tune", str(model), "--budget", "60", "--dimensions", "flash_attn",
                        "--max-probes", "1", "-p", "32", "-n", "8", "-r", "3", "--quiet"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("run it: "))[len("run it: "):]
    for sh in SHELLS:
        got = _echo_argv(sh, line, tmp_path, "moetui")
        assert got[:2] == ["run", str(model)], got
        assert not (tmp_path / "PWNED").exists()


def test_the_comma_warning_is_true_of_the_real_llama_bench(tiny_moe: Path, tmp_path: Path) -> None:
    """llama-bench itself splits -m on commas: the line fails however it is quoted, as the warning says."""
    from moetui.export.llama_tools import ensure_llama_tools

    bin_dir = ensure_llama_tools(["llama-bench"])
    model = tmp_path / "a,b.gguf"
    model.symlink_to(tiny_moe)
    cmd = export_command(RunConfig(model_path=str(model), n_gpu_layers=0), "bench",
                         vendored_flags("bench"))
    argv = [str(bin_dir / "llama-bench"), *cmd.argv[1:]]
    argv[argv.index("-p") + 1], argv[argv.index("-n") + 1] = "0", "1"
    r = subprocess.run(["bash", "-c", join(argv) + " -r 1"], capture_output=True, text=True, timeout=120)
    assert f"failed to load model '{tmp_path / 'a'}'" in r.stderr + r.stdout
