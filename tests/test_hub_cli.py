"""The hub through the real command line: `moetui plan/proxy/inspect REPO:QUANT` and `moetui models`, each run
as a subprocess against the fake hub (HF_ENDPOINT), online, offline, and with the hub unreachable."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import llama_cpp

from hub_server import big_vocab_model, fake_hub, sha256_of, write_split_proxy  # noqa: F401
from moetui.model.inspect import inspect_file

REPO = "me/tiny-GGUF"
FILE = "tiny-moe-Q4_K_M.gguf"


def _env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The test's environment (fake hub, isolated dirs) and an empty HOME, so neither huggingface_hub nor
    discovery ever touches the real user's files."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full = dict(os.environ, HOME=str(home), OLLAMA_MODELS=str(home / "no-ollama"), **env)
    for var in ("HF_HOME", "LLAMA_CACHE"):
        full.pop(var, None)
    return full


def moetui(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True,
                          env=_env(tmp_path, **env), timeout=120, check=False)


def _one_line_error(p: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    # one error line; an offline error is followed by one line saying what works offline
    hint = [ln for ln in lines[1:] if ln.startswith("moetui: the hub cannot be reached; what works offline")]
    assert len(lines) == 1 + len(hint) and lines[0].startswith("moetui: error: ") and pattern in lines[0], p.stderr
    assert not hint or "offline" in lines[0], p.stderr


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_plan_sizes_a_hub_model_before_download(fake_hub, tiny_moe, tmp_path) -> None:
    fake_hub.add_file(REPO, FILE, tiny_moe)
    p = moetui(tmp_path, "plan", f"{REPO}:Q4_K_M", "--rig", "rtx3060-ddr4-32", "--json")
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["model"] == f"hf://{REPO}/{FILE}"
    local = inspect_file(tiny_moe)
    weights = sum(m["weights"] for m in plan["memory"].values())
    assert weights == local.total_bytes  # every tensor of the remote header was placed somewhere
    # the header came over range requests; nothing was downloaded into the cache
    gets = [rng for method, path, rng in fake_hub.log if method == "GET" and path.startswith("/cdn/")]
    assert gets and all(rng and rng.startswith("bytes=0-") for rng in gets)
    assert not list((tmp_path / "hf-cache").rglob("*.gguf"))


def test_proxy_like_a_hub_model_loads_in_llama_cpp(fake_hub, tiny_moe, tmp_path) -> None:
    fake_hub.add_file(REPO, FILE, tiny_moe)
    out = tmp_path / "like.gguf"
    p = moetui(tmp_path, "proxy", "--like", f"{REPO}:q4_k_m", "--scale", "tiny", "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["path"] == str(out)
    got, want = inspect_file(out), inspect_file(tiny_moe)
    assert (got.architecture, got.n_layers, got.n_expert, got.n_expert_used, got.n_vocab) == \
        (want.architecture, want.n_layers, want.n_expert, want.n_expert_used, want.n_vocab)
    llm = llama_cpp.Llama(str(out), n_ctx=64, verbose=False)
    assert len(llm.tokenize(b"hi")) >= 1
    llm.close()


def test_models_list_groups_split_parts(fake_hub, tiny_moe, tmp_path) -> None:
    parts = write_split_proxy(tmp_path, "tiny-moe-Q8_0", mix="Q8_0", n_parts=2)
    fake_hub.add_file(REPO, FILE, tiny_moe)
    for part in parts:
        fake_hub.add_file(REPO, f"Q8_0/{part.name}", part)
    p = moetui(tmp_path, "models", "list", REPO, "--json")
    assert p.returncode == 0, p.stderr
    listing = json.loads(p.stdout)
    assert listing["commit"] == fake_hub.repos[REPO].commit
    by = {q["quant"]: q for q in listing["quants"]}
    assert [f["path"] for f in by["Q8_0"]["files"]] == [f"Q8_0/{x.name}" for x in parts]
    assert by["Q4_K_M"]["files"][0]["size"] == tiny_moe.stat().st_size and listing["source"] == "hub"
    human = moetui(tmp_path, "models", "list", REPO)
    assert human.returncode == 0 and "(+1 parts)" in human.stdout and "Q4_K_M" in human.stdout


def test_download_then_everything_local_works_offline(fake_hub, tiny_moe, tiny_draft, tmp_path) -> None:
    fake_hub.add_file(REPO, FILE, tiny_moe)
    # the catalog's draft, under its published repo and file name (served with a tiny stand-in's bytes)
    fake_hub.add_file("unsloth/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q8_0.gguf", tiny_draft)
    p = moetui(tmp_path, "models", "download", f"{REPO}:Q4_K_M", "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    path = Path(result["paths"][0])
    assert path.read_bytes() == tiny_moe.read_bytes() and result["verified"] == [FILE]
    assert "done" in p.stderr  # progress lines went to stderr, JSON alone to stdout
    human = moetui(tmp_path, "models", "download", "unsloth/Qwen3-0.6B-GGUF:Q8_0")
    assert human.returncode == 0, human.stderr
    draft = Path(human.stdout.strip())
    assert draft.read_bytes() == tiny_draft.read_bytes()

    off = {"HF_HUB_OFFLINE": "1"}
    models = moetui(tmp_path, "models", "--json", **off)
    assert models.returncode == 0, models.stderr
    overview = json.loads(models.stdout)
    assert sorted((m["source"], m["repo"], m["path"]) for m in overview["local"] if m["source"] != "pip") == [
        ("hf-cache", REPO, str(path)), ("hf-cache", "unsloth/Qwen3-0.6B-GGUF", str(draft))]
    assert overview["downloaded"] == {"unsloth/Qwen3-0.6B-GGUF:Q8_0": str(draft)}  # the catalog entry is marked
    plan = moetui(tmp_path, "plan", f"{REPO}:Q4_K_M", "--rig", "rtx3060-ddr4-32", "--json", **off)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["model"] == str(path)  # the cached file, no request made
    cached = moetui(tmp_path, "models", "list", REPO, "--json", **off)  # offline: what the cache holds
    assert cached.returncode == 0, cached.stderr
    assert "offline: listing me/tiny-GGUF" in cached.stderr
    listing = json.loads(cached.stdout)
    assert listing["source"] == "local HF cache" and [q["quant"] for q in listing["quants"]] == ["Q4_K_M"]
    _one_line_error(moetui(tmp_path, "models", "list", "me/never-GGUF", **off), "offline: listing me/never-GGUF")
    _one_line_error(moetui(tmp_path, "inspect", f"{REPO}:Q8_0", **off), "offline: ")


def test_unreachable_hub_is_one_line_and_local_models_still_list(tmp_path, tiny_moe) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / FILE).symlink_to(tiny_moe)
    dead = {"HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}", "HF_HUB_OFFLINE": "0",
            "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    _one_line_error(moetui(tmp_path, "plan", f"{REPO}:Q4_K_M", "--rig", "rtx3060-ddr4-32", **dead), "cannot reach")
    _one_line_error(moetui(tmp_path, "models", "download", f"{REPO}:Q4_K_M", **dead), "offline: ")
    assert moetui(tmp_path, "models", "add-folder", str(folder), **dead).returncode == 0
    p = moetui(tmp_path, "models", "--json", **dead)
    assert p.returncode == 0, p.stderr
    assert [(m["source"], m["name"]) for m in json.loads(p.stdout)["local"] if m["source"] != "pip"] == [("folder", FILE)]
    human = moetui(tmp_path, "models", **dead)
    assert human.returncode == 0 and "Qwen3-30B-A3B-Instruct-2507" in human.stdout and FILE in human.stdout


def test_bad_input_is_one_line(tmp_path) -> None:
    _one_line_error(moetui(tmp_path, "models", "add-folder", str(tmp_path / "nope")), "no such folder")
    _one_line_error(moetui(tmp_path, "models", "list", "not-a-repo"), "not a hub reference")
    _one_line_error(moetui(tmp_path, "models", "download", "me/repo/README.md"), "must end in .gguf")


def test_ctrl_c_keeps_the_partial_file_and_the_next_run_resumes(fake_hub, big_vocab_model, tmp_path) -> None:
    """The network stalls 25 MB in; the user presses Ctrl-C. The CLI says how to resume and exits 130; the
    bytes written so far stay in blobs/<sha256>.incomplete and the same command continues from them."""
    name, size = big_vocab_model.name, big_vocab_model.stat().st_size
    fake_hub.add_file("me/big-GGUF", name, big_vocab_model)
    fake_hub.stall_after[name] = 25_000_000
    proc = subprocess.Popen([sys.executable, "-m", "moetui", "models", "download", "me/big-GGUF:Q4_K_M"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    partial = tmp_path / "hf-cache" / "models--me--big-GGUF" / "blobs" / f"{sha256_of(big_vocab_model)}.incomplete"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fake_hub.bytes_sent.get(name, 0) < 25_000_000:
        time.sleep(0.05)  # bytes_sent is recorded once the server has sent everything it will send
    time.sleep(0.5)  # let the client write what it received
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "partial download is kept" in err and "Traceback" not in err
    kept = partial.stat().st_size
    assert 0 < kept <= 25_000_000
    assert not list((tmp_path / "hf-cache").rglob("snapshots/*/*.gguf"))

    again = moetui(tmp_path, "models", "download", "me/big-GGUF:Q4_K_M", "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert (result["bytes_resumed"], result["bytes_transferred"]) == (kept, size - kept)
    assert [r for m, p, r in fake_hub.log if m == "GET" and p.startswith("/cdn/")][-1] == f"bytes={kept}-"
    assert sha256_of(Path(result["paths"][0])) == sha256_of(big_vocab_model) and not partial.exists()
