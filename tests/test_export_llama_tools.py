"""The exported lines run on llama.cpp's own tools, built by moetui.export.llama_tools from the sources
vendored by the installed llama-cpp-python (the first build takes minutes; then cached per version in
~/.cache/moetui/llama-tools-<ver> or MOETUI_LLAMA_TOOLS_DIR)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from moetui.config import DraftConfig, RunConfig
from moetui.export.commandline import bench_command, export_command
from moetui.export.flags import VENDORED_FLAGS, detect_flags
from moetui.export.llama_tools import ensure_llama_tools
from moetui.export.parse import parse_server_text
from moetui.sizing.overrides import ALL_PARTS, cpu_expert_overrides

from conftest import repack_ok

TOOLS = ["llama-server", "llama-bench", "llama-cli"]


@pytest.fixture(scope="session")
def llama_bin() -> Path:
    return ensure_llama_tools(TOOLS)


@pytest.fixture
def odd_model(tiny_moe: Path, tmp_path: Path) -> Path:
    """The tiny MoE proxy at a path with spaces, quotes, $, backticks and non-ASCII."""
    d = tmp_path / "my models $HOME `x` it's \"q\" ünï 模型"
    d.mkdir()
    p = d / "tiny moe.gguf"
    p.symlink_to(tiny_moe)
    return p


@pytest.mark.parametrize("tool", ["server", "cli", "bench"])
def test_binary_flags_match_the_vendored_table(llama_bin: Path, tool: str) -> None:
    flags = detect_flags(tool, llama_bin / "llama-server")
    assert VENDORED_FLAGS[tool] - flags.flags == set()
    assert flags.fa_takes_value
    if tool != "bench":
        assert flags.ngl_all


def test_bench_line_runs_and_reports_the_same_settings(llama_bin: Path, odd_model: Path) -> None:
    cfg = RunConfig(model_path=str(odd_model), n_threads=2, n_batch=64, n_ubatch=32, cache_type_k="q8_0",
                    cache_type_v="f16", flash_attn="on", load_mode="none", repack=repack_ok(),
                    overrides=cpu_expert_overrides({1: ALL_PARTS, 3: {"up"}}))
    # -p/-n given to the exporter: appended again they would add test values (llama-bench's lists)
    cmd = bench_command(cfg, detect_flags("bench", llama_bin), n_prompt=8, n_gen=2, output="json")
    line = cmd.render("posix").splitlines()[-1] + " -r 1"
    p = subprocess.run(["bash", "-c", line], check=False, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout)
    assert [(r["n_prompt"], r["n_gen"]) for r in rows] == [(8, 0), (0, 2)]
    r = rows[0]
    # it loaded the model, reachable only at that exact path; llama-bench's own JSON escaper mangles the
    # non-ASCII bytes of the name (its bug: sign-extended chars), so compare the part before them
    ascii_part = str(odd_model).split("ü")[0]
    assert r["model_filename"].startswith(ascii_part) and r["model_filename"].endswith("/tiny moe.gguf")
    assert (r["n_threads"], r["n_batch"], r["n_ubatch"]) == (2, 64, 32)
    assert (r["type_k"], r["type_v"], r["flash_attn"], r["load_mode"]) == ("q8_0", "f16", 1, "none")
    assert r["tensor_buft_overrides"] == ";".join(o.to_arg() for o in cfg.overrides)
    assert r["n_gpu_layers"] == -1
    assert r["repack"] == cfg.repack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _serve(line: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    with open(log, "wb") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(["bash", "-c", f"exec {line} --host 127.0.0.1 --port {port} -v"],
                                stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"llama-server exited {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        try:
            if _get(base + "/health").get("status") == "ok":
                return proc, base
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("llama-server did not become healthy: " + log.read_text(errors="replace")[-3000:])


def test_server_line_serves_with_the_config(llama_bin: Path, odd_model: Path, tmp_path: Path) -> None:
    cfg = RunConfig(model_path=str(odd_model), n_ctx=1536, n_parallel=2, n_batch=256, n_ubatch=64, n_threads=2,
                    repack=repack_ok(),
                    cache_type_k="q8_0", flash_attn="on", overrides=cpu_expert_overrides({0: ALL_PARTS, 2: {"down"}}),
                    notes=["planned for the test"])
    cmd = export_command(cfg, "server", binary=str(llama_bin / "llama-server"))
    text = cmd.render("posix")
    back = parse_server_text(text)
    assert back == cfg.replace(model_path=str(odd_model))
    log = tmp_path / "server.log"
    proc, base = _serve(text.splitlines()[-1], log)
    try:
        props = _get(base + "/props")
        assert props["total_slots"] == 2
        assert props["model_path"] == str(odd_model)
        assert props["default_generation_settings"]["n_ctx"] == 1536 // 2  # per slot
        req = urllib.request.Request(base + "/completion", data=json.dumps({"prompt": "Hello", "n_predict": 4}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.loads(r.read())
        assert out["tokens_predicted"] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    overridden = {ln.split("tensor ")[1].split()[0] for ln in text.splitlines() if "buffer type overridden" in ln}
    assert {"blk.0.ffn_up_exps.weight", "blk.0.ffn_gate_exps.weight", "blk.0.ffn_down_exps.weight",
            "blk.2.ffn_down_exps.weight"} <= overridden
    assert not any(t.startswith(("blk.1.", "blk.3.")) for t in overridden)
    assert re.search(r"llama_context: n_ubatch\s+= 64\n", text)
    assert re.search(r"K \(q8_0\)", text)


@pytest.mark.parametrize("kind", ["model", "ngram"])
def test_server_line_with_speculative_decoding(llama_bin: Path, tiny_moe: Path, tiny_draft: Path, tmp_path: Path,
                                               kind: str) -> None:
    draft = (DraftConfig(model_path=str(tiny_draft), draft_max=4, n_gpu_layers=0) if kind == "model"
             else DraftConfig(kind="ngram", draft_max=4))
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=1024, n_threads=2, draft=draft, repack=repack_ok())
    text = export_command(cfg, "server", binary=str(llama_bin / "llama-server")).render("posix")
    log = tmp_path / "server.log"
    proc, base = _serve(text.splitlines()[-1], log)
    try:
        req = urllib.request.Request(base + "/completion", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"prompt": "a b c a b c a b c", "n_predict": 8}).encode())
        with urllib.request.urlopen(req, timeout=120) as r:
            out = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert out["tokens_predicted"] >= 1
    if kind == "model":
        assert out["timings"].get("draft_n", 0) > 0  # the draft model really drafted
        assert f"loading draft model '{tiny_draft}'" in log.read_text(errors="replace")


def test_cli_line_runs_one_turn(llama_bin: Path, odd_model: Path) -> None:
    cfg = RunConfig(model_path=str(odd_model), n_ctx=512, n_threads=2, overrides=cpu_expert_overrides({1: ALL_PARTS}),
                    repack=repack_ok())
    line = export_command(cfg, "cli", binary=str(llama_bin / "llama-server")).render("posix").splitlines()[-1]
    p = subprocess.run(["bash", "-c", line + " -p Hello -n 4 -st"], check=False, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert "invalid argument" not in p.stderr and "error: " not in p.stderr.lower(), p.stderr[-2000:]
    assert p.returncode == 0, p.stderr[-2000:]


def test_cli_export_for_a_given_binary_names_its_version(llama_bin: Path, tiny_moe: Path) -> None:
    import sys
    p = subprocess.run([sys.executable, "-m", "moetui", "export", str(tiny_moe), "--binary", str(llama_bin / "llama-server"),
                        "--tool", "server"], check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("# for llama-server version") and "0c1e570" in first
    assert p.stdout.splitlines()[-1].startswith(str(llama_bin / "llama-server") + " -m ")


def test_unusable_source_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moetui.export.llama_tools import LlamaToolsError
    monkeypatch.setenv("MOETUI_LLAMA_TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setenv("MOETUI_LLAMA_SRC", str(tmp_path))
    with pytest.raises(LlamaToolsError, match="not a llama.cpp source tree"):
        ensure_llama_tools(["llama-server"], out=None)
