"""A tune's measured efficiency factors replace the defaults in later plans on the same rig."""

from __future__ import annotations

import json
import subprocess
import sys

from moetui.sizing.speed import EfficiencyFactors

QUICK = ["-p", "32", "-n", "8", "-r", "3"]


def moetui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, timeout=180)


def test_plan_uses_the_factors_a_tune_measured_on_this_rig(tiny_moe):
    before = moetui("plan", str(tiny_moe), "--json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["efficiency"]["source"] == "defaults"

    tuned = moetui("tune", str(tiny_moe), "--json", "--budget", "60", "--dimensions", "flash_attn",
                   "--max-probes", "1", *QUICK)
    assert tuned.returncode == 0, tuned.stderr
    measured = json.loads(tuned.stdout)["efficiency"]
    assert measured and measured["source"].startswith("tuner:")

    after = json.loads(moetui("plan", str(tiny_moe), "--json").stdout)
    eff = after["efficiency"]
    assert eff["source"] == measured["source"]
    # the tiny proxy's decode differs from the default prediction, so a factor moved and the prediction with it
    assert eff["cpu_bw"] != EfficiencyFactors().cpu_bw
    assert after["decode_tps"] != json.loads(before.stdout)["decode_tps"]
