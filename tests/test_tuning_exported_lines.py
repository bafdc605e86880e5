"""tuning/exported_lines.py runs the three sides for real (moetui's worker, the exported llama-bench and
llama-server lines) on the tiny proxy and reports each against the worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from moetui.config import RunConfig

SCRIPT = Path(__file__).resolve().parents[1] / "tuning" / "exported_lines.py"


def test_the_exported_lines_are_benched_beside_the_worker(tiny_moe: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(RunConfig(model_path=str(tiny_moe), n_ctx=512, n_threads=2, n_ubatch=64).to_dict()))
    r = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tiny_moe), "--config", str(cfg), "--rounds", "2",
                        "--reps", "1", "--n-prompt", "48", "--n-gen", "8", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "exported_lines.json").read_text())
    sides = {"moetui worker", "llama-bench (exported line)", "llama-server (exported line)"}
    assert set(res["median"]) == sides and set(res["over_worker"]) == sides - {"moetui worker"}
    assert [x["side"] for x in res["rounds"]] == [*sorted(sides, key=list(res["median"]).index),
                                                  *sorted(sides, key=list(res["median"]).index)[::-1]]
    assert all(len(x["pp"]) == 1 and len(x["tg"]) == 1 and x["pp"][0] > 0 and x["tg"][0] > 0 for x in res["rounds"])
    assert "-ub 64" in res["bench_line"] and "-ub 64" in res["server_line"] and "-c 512" in res["server_line"]
    assert "| llama-server (exported line) |" in (tmp_path / "out" / "README.md").read_text()
