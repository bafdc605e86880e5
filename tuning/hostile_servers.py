"""Issue 30's table re-run: servers on 127.0.0.1 that misbehave (the tests' fake hub, tests/hub_server.py
with tests/hub_faults.py, and fake RPC server, tests/rpc_fake.py), corrupt saved state, headers that
describe no model, a fresh cache dir. Each case runs the real CLI in a child and records its exit code,
wall seconds, peak RSS (its own or its largest child's) and the error (or warning) line moetui printed. The deadline is the default
(MOETUI_NET_TIMEOUT unset: 15 s) unless --deadline says otherwise. Optionally runs the hypothesis suite
on listings and RPC answers (tests/test_fuzz_servers.py) and adds its outcome counts.

    python3 tuning/hostile_servers.py [--deadline S] [--fuzz ci|long]

Writes tuning/results/hostile_servers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from gguf_hostile import hostile_source  # noqa: E402
from hub_server import FakeHub  # noqa: E402
from rpc_fake import FakeRpcServer  # noqa: E402

from moetui.model.proxy import write_proxy  # noqa: E402
from moetui.model.shapes import load_shape, scaled  # noqa: E402

REPO, FILE = "me/tiny-GGUF", "tiny-moe-Q4_K_M.gguf"


def run_cli(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """`moetui ARGS` in a child: exit code, seconds, peak RSS (MiB) and the line that says what happened."""
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "moetui", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, cwd=ROOT)
    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, s=s: out.__setitem__(k, s.read()))
               for k, s in (("stdout", p.stdout), ("stderr", p.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.monotonic() - t0
    for r in readers:
        r.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    err = out["stderr"].decode(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.startswith("moetui: error:")] or \
            [ln for ln in err.splitlines() if ln.startswith("moetui: warning:")] or err.splitlines()[-1:] or [""]
    return {"exit": p.returncode, "seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "message": lines[0].removeprefix("moetui: ")[:300], "traceback": "Traceback" in err}


def hub_cases(env: dict[str, str], model: Path) -> list[dict[str, object]]:
    rows = []
    for fault, commands in (("stall", [["models", "list", REPO], ["inspect", f"{REPO}:Q4_K_M"], ["plan", f"{REPO}:Q4_K_M"]]),
                            ("endless", [["models", "list", REPO]]),
                            *[(f, [["models", "list", REPO]]) for f in ("truncated", "html", "list", "wrong_types", "nested")],
                            ("huge_size", [["models", "list", REPO], ["plan", f"{REPO}:Q4_K_M"]]),
                            ("negative_size", [["models", "list", REPO], ["plan", f"{REPO}:Q4_K_M"]]),
                            ("trickle", [["inspect", f"{REPO}:Q4_K_M"]]),
                            ("stalled download", [["models", "download", f"{REPO}:Q4_K_M"]])):
        for args in commands:
            hub = FakeHub()
            hub.add_file(REPO, FILE, model)
            if fault == "trickle":
                hub.range_fault[FILE], hub.trickle_s = "trickle", 1.0
            elif fault == "stalled download":
                hub.stall_downloads[FILE] = 1 << 16
            else:
                hub.listing_fault = fault
            with tempfile.TemporaryDirectory() as cache:
                hub_env = dict(env, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HUB_CACHE=cache,
                               HF_TOKEN="hf_fake", HF_HUB_DISABLE_XET="1")
                rows.append({"source": "hub", "case": fault, "command": " ".join(args), **run_cli(args, hub_env)})
            hub.close()
    return rows


def rpc_cases(env: dict[str, str]) -> list[dict[str, object]]:
    rows = []
    for case, kw in (("device count 2^32-1", dict(devices=2**32 - 1)),
                     ("2^32-1 devices to libggml only", dict(devices_later=2**32 - 1, honest_clients=2)),
                     ("16 EiB free", dict(free=2**64 - 1, total=2**64 - 1)),
                     ("64 GiB free of 1 GiB", dict(free=64 << 30, total=1 << 30)),
                     ("malformed memory answer", dict(malformed_memory=True)),
                     ("handshake a byte every 0.5 s", dict(trickle_s=0.5))):
        with FakeRpcServer(**kw) as addr:
            rows.append({"source": "rpc", "case": case, "command": f"detect --no-bandwidth --rpc {addr}",
                         **run_cli(["detect", "--no-bandwidth", "--rpc", addr], env)})
    return rows


DEEP = "[" * 200_000 + "]" * 200_000
STATE = {
    "bandwidth cache nested 200,000 deep": ("cache", "ram_bandwidth.json", DEEP, ["detect", "--json"]),
    'bandwidth read_gbs "fast"': ("cache", "ram_bandwidth.json",
                                  json.dumps({"k": {"measured_at": 1.7e9, "result": {"read_gbs": "fast"}}}), ["detect", "--json"]),
    "bandwidth 1e308": ("cache", "ram_bandwidth.json",
                        json.dumps({"k": {"measured_at": 1.7e9, "result": {"read_gbs": 1e308}}}), ["detect", "--json"]),
    "bandwidth NaN": ("cache", "ram_bandwidth.json", '{"k": {"measured_at": 1.7e9, "result": {"read_gbs": NaN}}}',
                      ["detect", "--json"]),
    "folders.json wrong types": ("data", "folders.json", json.dumps({"folders": 5}), ["models", "--json"]),
    "folders.json nested deep": ("data", "folders.json", '{"folders": ' + DEEP + "}", ["models", "--json"]),
    "added_files.json wrong types": ("data", "added_files.json", json.dumps({"files": [1, {"a": 2}]}), ["models", "--json"]),
    "added path with a NUL byte": ("data", "added_files.json", json.dumps({"files": ["/tmp/a\u0000b.gguf"]}),
                                   ["models", "--json"]),
}


def state_cases(env: dict[str, str], model: Path) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "data-file"
        bad.write_text("a file")
        rows.append({"source": "state", "case": "data dir is a file", "command": "models --json",
                     **run_cli(["models", "--json"], dict(env, MOETUI_DATA_DIR=str(bad)))})
    for case, (where, name, text, args) in STATE.items():
        with tempfile.TemporaryDirectory() as tmp:
            e = dict(env, MOETUI_DATA_DIR=f"{tmp}/data", MOETUI_CACHE_DIR=f"{tmp}/cache")
            other = "added_files.json" if name == "folders.json" else "folders.json"
            Path(f"{tmp}/data").mkdir()
            Path(f"{tmp}/data/{other}").write_text(json.dumps({"files": [str(model)]} if other == "added_files.json"
                                                              else {"folders": [str(model.parent)]}))
            Path(f"{tmp}/{where}").mkdir(exist_ok=True)
            Path(f"{tmp}/{where}/{name}").write_text(text)
            row = run_cli(args, e)
            extra = ""
            if args[0] == "models":
                extra = f"; other local model still listed: {str(model) in _stdout_paths(args, e)}"
            rows.append({"source": "state", "case": case, "command": " ".join(args), **row,
                         "message": str(row["message"]) + extra})
    return rows


def _stdout_paths(args: list[str], env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, env=env).stdout


def header_cases(env: dict[str, str], folder: Path) -> list[dict[str, object]]:
    rows = []
    for key in ("attention.head_count_kv", "expert_used_count", "embedding_length", "context_length"):
        src = hostile_source("qwen3-30b-a3b", **{f"{{arch}}.{key}": 0})
        path = folder / f"zero-{key}.gguf"
        path.write_bytes(src.read(0, src.size()))
        rows.append({"source": "gguf header", "case": f"{key}=0", "command": f"inspect {path.name}",
                     **run_cli(["inspect", str(path)], env)})
    return rows


def disk_case(env: dict[str, str]) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        row = run_cli(["models", "--json"], dict(env, MOETUI_CACHE_DIR=f"{tmp}/cache"))
        written = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    return [{"source": "disk", "case": "a fresh cache dir", "command": "models --json", **row,
             "message": f"{written:,} bytes written into the fresh cache dir"}]


def fuzz(profile: str) -> dict[str, object]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        env = dict(os.environ, PYTHONPATH=str(ROOT), MOETUI_FUZZ_PROFILE=profile, MOETUI_FUZZ_SERVERS_REPORT=report.name)
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz_servers.py"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        counts = json.loads(Path(report.name).read_text() or "{}")
    return {"profile": profile, "passed": p.returncode == 0, **counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deadline", type=float, help="MOETUI_NET_TIMEOUT for the runs (default: moetui's own, 15 s)")
    ap.add_argument("--fuzz", choices=["ci", "long"], help="also run tests/test_fuzz_servers.py at this profile")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "MOETUI_NET_TIMEOUT"}
    env["PYTHONPATH"] = str(ROOT)
    if args.deadline:
        env["MOETUI_NET_TIMEOUT"] = str(args.deadline)
    with tempfile.TemporaryDirectory() as tmp:
        env.update(MOETUI_DATA_DIR=f"{tmp}/data", MOETUI_CACHE_DIR=f"{tmp}/cache", HF_HUB_OFFLINE="1")
        model = Path(tmp) / "models" / "qwen3-30b-a3b-tiny-Q4_K_M.gguf"
        model.parent.mkdir()
        write_proxy(scaled(load_shape("qwen3-30b-a3b"), "tiny"), model, "Q4_K_M")
        rows = hub_cases(env, model) + rpc_cases(env) + state_cases(env, model) + header_cases(env, Path(tmp)) + disk_case(env)
    result = {"deadline_s": args.deadline or 15.0, "cases": rows, "fuzz": fuzz(args.fuzz) if args.fuzz else None}
    out = HERE / "results"
    (out / "hostile_servers.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Issue 30's table, re-run", "",
             f"`python3 tuning/hostile_servers.py{' --deadline ' + str(args.deadline) if args.deadline else ''}"
             f"{' --fuzz ' + args.fuzz if args.fuzz else ''}` (MOETUI_NET_TIMEOUT: {result['deadline_s']:g} s). "
             "Peak RSS: the moetui process, or the largest child it waited for (the RPC query child).", "",
             "| source | case | command | exit | s | peak RSS MiB | traceback | message |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        msg = str(r["message"]).replace("|", "\\|")
        lines.append(f"| {r['source']} | {r['case']} | `{r['command']}` | {r['exit']} | {r['seconds']} | "
                     f"{r['peak_rss_mib']} | {'yes' if r['traceback'] else 'no'} | {msg} |")
    if result["fuzz"]:
        f = result["fuzz"]
        lines += ["", f"Fuzz ({f['profile']}, tests/test_fuzz_servers.py, {'passed' if f['passed'] else 'FAILED'}): "
                      f"{f.get('inputs', 0)} inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(f.get("outcomes", {}).items()))]
    (out / "hostile_servers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
