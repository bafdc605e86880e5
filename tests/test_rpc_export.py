"""Exported llama-server / llama-cli / llama-bench lines with `--rpc` and the planned split run on the real
binaries (built once per machine, with RPC, into ~/.cache/moetui/llama-tools-<ver>) against two
capped ggml-rpc-servers on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from moetui.config import RunConfig
from moetui.export.commandline import bench_command, export_command
from moetui.export.flags import detect_flags
from moetui.export.llama_tools import ensure_llama_tools
from moetui.export.parse import parse_server_text

from conftest import repack_ok
from rpc_helpers import rpc_servers, split_proxy
from test_export_llama_tools import _serve

TOOLS = ["ggml-rpc-server", "llama-server", "llama-cli", "llama-bench"]


@pytest.fixture(scope="module")
def rpc_bin() -> Path:
    return ensure_llama_tools(TOOLS, variant="rpc")


@pytest.fixture(scope="module")
def setup(rpc_bin: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    model = split_proxy(tmp_path_factory.mktemp("rpc-export") / "split.gguf")
    with rpc_servers(tmp_path_factory.mktemp("rpc-export-servers")) as procs:
        addrs = [a for a, _ in procs]
        # this host: layers 0-1; the servers 3 each (the second with the output head): what the plan makes
        cfg = RunConfig(model_path=str(model), n_ctx=512, n_threads=1, n_batch=64, n_ubatch=64, repack=repack_ok(),
                        rpc_servers=addrs, n_gpu_layers=7, tensor_split=[3.0, 4.0], flash_attn="on")
        yield cfg, addrs


def _placed(log: str) -> dict[int, str]:
    return {int(il): dev for il, dev in re.findall(r"layer\s+(\d+) assigned to device (\S+),", log)}


def test_server_line_with_rpc_answers_completion(rpc_bin: Path, setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, addrs = setup
    cmd = export_command(cfg, "server", binary=str(rpc_bin / "llama-server"))
    assert cmd.argv[cmd.argv.index("--rpc") + 1] == ",".join(addrs)
    assert cmd.argv.index("--rpc") < cmd.argv.index("-ngl") and not cmd.differences
    text = cmd.render("posix")
    assert parse_server_text(text).rpc_servers == addrs
    log = tmp_path / "server.log"
    proc, base = _serve(text.splitlines()[-1], log)
    body = json.dumps({"prompt": "Hello", "n_predict": 8, "temperature": 0}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(base + "/completion", data=body), timeout=120) as r:
            assert json.loads(r.read())["tokens_predicted"] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert _placed(text) == {0: "CPU", 1: "CPU", 2: "RPC0", 3: "RPC0", 4: "RPC0", 5: "RPC1", 6: "RPC1", 7: "RPC1",
                              8: "RPC1"}  # slot 8: the output head
    for a in addrs:
        assert re.search(rf"RPC0\[{re.escape(a)}\] model buffer size", text)


def test_cli_line_with_rpc_runs_one_turn(rpc_bin: Path, setup) -> None:  # type: ignore[no-untyped-def]
    cfg, addrs = setup
    line = export_command(cfg, "cli", binary=str(rpc_bin / "llama-server")).render("posix").splitlines()[-1]
    p = subprocess.run(["bash", "-c", line + " -p Hello -n 4 -st -v"], check=False, capture_output=True, text=True,
                       errors="replace", timeout=300, stdin=subprocess.DEVNULL)  # a random proxy's reply: any bytes
    assert p.returncode == 0, p.stderr[-2000:]
    assert _placed(p.stderr)[7] == "RPC1" and f"RPC0[{addrs[1]}]" in p.stderr


def test_bench_line_with_rpc_runs_on_the_servers(rpc_bin: Path, setup) -> None:  # type: ignore[no-untyped-def]
    cfg, addrs = setup
    cmd = bench_command(cfg, detect_flags("bench", rpc_bin), n_prompt=16, n_gen=4, output="json")
    assert "-ts" in cmd.argv and cmd.argv[cmd.argv.index("-ts") + 1] == "3/4"
    p = subprocess.run(["bash", "-c", cmd.render("posix").splitlines()[-1] + " -r 1"], check=False, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout)
    assert all("RPC" in r["backends"] for r in rows) and rows[0]["n_gpu_layers"] == 7
    assert rows[0]["tensor_split"].startswith("3.00/4.00")


def test_a_tool_built_without_rpc_says_the_split_is_left_out(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = setup
    flags = detect_flags("server")  # the vendored table, or a llama-server on PATH
    flags.flags.discard("--rpc")
    flags.help_text = "llama-server without RPC"
    cmd = export_command(cfg, "server", flags)
    assert "--rpc" not in cmd.argv and any("built without RPC" in d for d in cmd.differences)
