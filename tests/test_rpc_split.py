"""A model across this host and two real ggml-rpc-servers on 127.0.0.1, each capped so that it cannot hold
the model alone: detect asks them, the plan splits, the worker loads the split through libggml's RPC
client, and greedy output equals a one-host run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moetui.config import RunConfig, TensorOverride
from moetui.errors import MoetuiError
from moetui.hardware import detect_rig
from moetui.model.inspect import inspect_file
from moetui.runtime.client import ModelWorker, collect
from moetui.runtime.rpc_ctypes import probe
from moetui.export.rpc_server import rpc_server_binary
from moetui.sizing.memory import CPU_RUNTIME_OVERHEAD
from moetui.sizing.plan import PlanOptions, plan

from conftest import repack_ok
from rpc_helpers import MIB, SERVER_CAP, rpc_servers, split_proxy

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    rpc_server_binary()  # built once into the shared RPC tools folder
    with rpc_servers(tmp_path_factory.mktemp("rpc")) as procs:
        yield procs


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return split_proxy(tmp_path_factory.mktemp("rpc-model") / "split.gguf")


def _base(model: Path) -> RunConfig:
    return RunConfig(model_path=str(model), n_ctx=512, n_threads=1, n_threads_batch=1, n_batch=64, n_ubatch=64,
                     repack=repack_ok(), seed=1)


def _generate(cfg: RunConfig) -> tuple[str, str]:
    with ModelWorker() as w:
        info = w.start(cfg)
        text = collect(w.generate(PROMPT, max_tokens=24)).text
        return text, info.log_path.read_text(errors="replace")


def test_detect_asks_each_server_for_its_memory(servers) -> None:  # type: ignore[no-untyped-def]
    spec = ",".join(f"{a}=40MiB" for a, _ in servers)
    devices = probe(spec)
    assert [d.endpoint for d in devices] == [a for a, _ in servers]
    for d in devices:
        assert d.buffer_type == f"RPC0[{d.endpoint}]"  # device 0 of that server, what -ot names
        assert d.backend == "CPU" and d.protocol.startswith("7.")
        # a CPU server reports its host's RAM (ggml's CPU device: free = total); the cap is the user's word
        assert d.memory_total_bytes == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        assert d.usable_bytes == SERVER_CAP and d.rtt_s and d.rtt_s < 0.05
    out = subprocess.run([sys.executable, "-m", "moetui", "detect", "--no-bandwidth", "--rpc", spec],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    for a, _ in servers:
        assert re.search(rf"remote\s+RPC0\[{re.escape(a)}\]: CPU, .* capped at 40 MiB", out.stdout)


def test_the_cap_is_real_one_server_cannot_hold_the_model(servers, model: Path) -> None:  # type: ignore[no-untyped-def]
    addr = servers[0][0]
    cfg = _base(model).replace(rpc_servers=[addr], n_gpu_layers=-1)
    with pytest.raises(MoetuiError) as err, ModelWorker() as w:
        w.start(cfg)
    assert f"RPC0[{addr}]" in str(err.value)  # llama.cpp's "unable to allocate RPC0[host:port] buffer"


def test_plan_splits_and_the_split_decodes_exactly_like_one_host(servers, model: Path) -> None:  # type: ignore[no-untyped-def]
    info = inspect_file(model)
    rig = detect_rig(measure_bandwidth=False)
    o = PlanOptions(n_ctx=512, n_ubatch=64, n_batch=64)
    rig.memory.available_bytes = o.ram_reserve_bytes + CPU_RUNTIME_OVERHEAD + 30 * MIB  # room for 2 layers here
    rig.remotes = probe(",".join(f"{a}={SERVER_CAP}" for a, _ in servers))
    p = plan(info, rig, o)
    assert p.mode == "rpc_split"
    assert p.config.rpc_servers == [a for a, _ in servers]  # it needed both
    local = [l.index for l in p.layers if l.device == "CPU"]
    assert local and local == list(range(len(local)))  # the leading layers stay here
    assert any("makes it fit" in line for line in p.explanation)
    assert p.decode_tps > 0 and p.prompt_tps > 0
    assert p.llama_args()[:2] == ["--rpc", ",".join(p.config.rpc_servers)]

    one_host, _ = _generate(_base(model))
    cfg = p.config.replace(n_threads=1, n_threads_batch=1, seed=1)
    split, log = _generate(cfg)
    assert split == one_host and split
    # llama.cpp put the layers where the plan said: RPC<k> is the k-th registered server
    names = {f"RPC{k}": a for k, a in enumerate(cfg.rpc_servers)}
    placed = {int(il): dev for il, dev in re.findall(r"layer\s+(\d+) assigned to device (\S+),", log)}
    for l in p.layers:
        want = "CPU" if l.device == "CPU" else next(k for k, a in names.items() if a in l.device)
        assert placed[l.index] == want, (l, placed)
    for a in cfg.rpc_servers:
        assert re.search(rf"RPC0\[{re.escape(a)}\] model buffer size", log)


def test_experts_go_to_a_named_server_buffer_with_ot(servers, model: Path) -> None:  # type: ignore[no-untyped-def]
    """-ot with an RPC buffer type: layer 1's experts on the second server, everything else here."""
    addr = servers[1][0]
    cfg = _base(model).replace(rpc_servers=[a for a, _ in servers], n_gpu_layers=0,
                               overrides=[TensorOverride(r"blk\.1\.ffn_.*_exps", f"RPC0[{addr}]")])
    text, log = _generate(cfg)
    assert re.search(rf"blk\.1\.ffn_up_exps\.weight.*buffer type overridden to RPC0\[{re.escape(addr)}\]", log)
    assert text == _generate(_base(model))[0]


def test_moetui_run_with_rpc_prints_what_one_host_prints(servers, model: Path) -> None:  # type: ignore[no-untyped-def]
    def run(*extra: str) -> str:
        p = subprocess.run([sys.executable, "-m", "moetui", "run", str(model), "-p", PROMPT, "-n", "12", "--temp", "0",
                            "-t", "1", "-c", "512", "--untuned", "--no-stats", *extra],
                           capture_output=True, text=True, timeout=300, check=False)
        assert p.returncode == 0, p.stderr[-2000:]
        return p.stdout

    addrs = ",".join(a for a, _ in servers)
    assert run("--rpc", addrs, "-ngl", "7", "-ts", "3,4") == run()


def test_moetui_plan_with_rpc_asks_the_servers_and_keeps_a_fitting_model_here(servers, model: Path) -> None:  # type: ignore[no-untyped-def]
    spec = ",".join(f"{a}=40MiB" for a, _ in servers)
    p = subprocess.run([sys.executable, "-m", "moetui", "plan", str(model), "--rpc", spec, "--ctx", "512"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "the 2 RPC server(s) are not used" in p.stdout and "--rpc" not in p.stdout.splitlines()[-1]
