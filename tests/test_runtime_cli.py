"""`moetui run` and `moetui bench` as a user runs them: real subprocesses on a tiny proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from moetui.cli import build_parser
from moetui.cli.run_cmd import config_from_args


def _moetui(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_bench_json(tiny_moe: Path) -> None:
    r = _moetui("bench", str(tiny_moe), "--json", "-p", "32", "-n", "8", "-r", "2", "-t", "1")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert len(d["pp_tok_s"]) == 2 and d["pp_median"] > 0 and d["tg_median"] > 0 and d["n_threads"] == 1


def test_run_prompt_prints_tokens_and_stats(tiny_moe: Path) -> None:
    r = _moetui("run", str(tiny_moe), "--prompt", "hello", "-n", "6", "--temp", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "tg" in r.stderr and "experts RAM/VRAM" in r.stderr


def test_run_repl_reads_stdin(tiny_moe: Path) -> None:
    r = _moetui("run", str(tiny_moe), "-n", "4", "--no-stats", stdin="hi\nhello again\n")
    assert r.returncode == 0, r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.strip()]) == 2  # one reply per line


def test_bad_inputs_one_line_exit_2(tiny_moe: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "g.gguf"
    garbage.write_bytes(b"\0" * 4096)
    for args in (["run", str(tmp_path / "none.gguf"), "-p", "x"], ["run", str(tiny_moe), "-p", "x", "-ot", "nodevice"],
                 ["bench", str(garbage), "-r", "1"]):
        r = _moetui(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "moetui: error:" in r.stderr and "Traceback" not in r.stderr


def test_flags_apply_on_top_of_config(tiny_moe: Path, tmp_path: Path) -> None:
    from moetui.config import RunConfig

    cfg_path = tmp_path / "c.json"
    RunConfig(model_path="elsewhere.gguf", n_ctx=1024, n_threads=3).save(cfg_path)
    args = build_parser().parse_args(["run", str(tiny_moe), "--config", str(cfg_path), "-c", "2048", "-ub", "128",
                                      "--n-cpu-moe", "2", "-ot", r"blk\.3\.ffn_up_exps=CPU", "--draft-max", "5",
                                      "--lookup", "-fa", "on", "-ctk", "q8_0"])
    cfg = config_from_args(args)
    assert cfg.model_path == str(tiny_moe) and cfg.n_ctx == 2048 and cfg.n_threads == 3 and cfg.n_ubatch == 128
    assert [o.pattern for o in cfg.overrides][0] == r"blk\.3\.ffn_up_exps" and len(cfg.overrides) == 3
    assert cfg.draft.kind == "ngram" and cfg.draft.draft_max == 5
    assert cfg.flash_attn == "on" and cfg.cache_type_k == "q8_0"


def test_ctrl_c_stops_the_reply_not_the_app(tiny_moe: Path) -> None:
    import signal
    import time

    import psutil

    p = subprocess.Popen([sys.executable, "-m", "moetui", "run", str(tiny_moe), "-p", "the", "-n", "1000000", "-c", "100000",
                          "--repeat-penalty", "1.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    p.stdout.read(20)  # tokens are flowing
    workers = psutil.Process(p.pid).children(recursive=True)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "(stopped)" in err and "Traceback" not in err
    time.sleep(0.5)
    assert workers and not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
