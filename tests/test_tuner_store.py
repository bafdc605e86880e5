"""The profile store: atomic, keyed by rig + model + llama.cpp version, corrupt files reported and
ignored, failures one file each so concurrent tunes never lose or corrupt each other's records."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from moetui.config import RunConfig
from moetui.runtime.bench import BenchResult
from moetui.sizing.settings import Settings
from moetui.sizing.workload import WORKLOADS
from moetui.tuner import Probe, ProfileStore, TuneResult
from moetui.tuner.store import config_key


def _result(tag: str = "a", n: int = 3) -> TuneResult:
    probes = [Probe(i, RunConfig(model_path="/m.gguf", n_ubatch=256 * (i + 1), n_batch=2048), {"n_ubatch": 256 * (i + 1)},
                    f"ub {256 * (i + 1)}", status="ok", score=10.0 + i,
                    bench=BenchResult(64, 16, 3, [100.0, 101.0, 99.0], [10.0 + i, 10.1 + i, 9.9 + i]))
              for i in range(n)]
    return TuneResult(best=probes[-1], baseline=probes[0], plan_probe=probes[0], predicted={"decode_tps": 12.0, "prompt_tps": 90.0},
                      probes=probes, rig_fingerprint="rig-x", model_id=f"model-{tag}", llama_version="0.3.36",
                      objective="decode", elapsed_s=1.5, stopped="converged", model_path="/m.gguf")


def test_round_trip_and_keys(tmp_path):
    store = ProfileStore(tmp_path)
    r = _result()
    path = store.put(r)
    assert path.parent == tmp_path and json.loads(path.read_text())["best"] == 2
    back = store.get("rig-x", "model-a", "0.3.36")
    assert back is not None and back.to_dict() == r.to_dict()
    assert back.best is back.probes[2] and back.plan_probe is back.probes[0]  # references, not copies
    assert store.get("rig-x", "model-a", "0.3.37") is None  # another llama.cpp: another profile
    assert store.get("rig-y", "model-a", "0.3.36") is None
    store.put(_result("b"))
    assert sorted(x.model_id for x in store.list()) == ["model-a", "model-b"]
    assert store.key("rig/../x", "m:1", "v 1") == "rig-..-x__m-1__v-1"  # no path tricks in file names


def test_default_root_is_the_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MOETUI_DATA_DIR", str(tmp_path / "d"))
    assert ProfileStore().root == tmp_path / "d" / "profiles"


def test_a_corrupt_profile_is_reported_and_ignored(tmp_path):
    store = ProfileStore(tmp_path)
    path = store.put(_result())
    path.write_text(path.read_text()[:100])  # truncated
    assert store.get("rig-x", "model-a", "0.3.36") is None
    assert store.warnings and "corrupt tuning profile" in store.warnings[0] and str(path) in store.warnings[0]
    path.write_text(json.dumps({"best": 0, "probes": [{"config": {"nope": 1}}]}))
    assert store.get("rig-x", "model-a", "0.3.36") is None and len(store.warnings) == 2
    assert store.list() == []


def test_failures_are_per_config_and_ignore_notes(tmp_path):
    store = ProfileStore(tmp_path)
    cfg = RunConfig(model_path="/a/m.gguf", n_ubatch=4096, n_batch=4096)
    assert not store.is_failed("rig-x", "model-a", cfg)
    store.record_failure("rig-x", "model-a", cfg, "oom", "cudaMalloc failed: out of memory")
    assert store.is_failed("rig-x", "model-a", cfg.replace(notes=["why"], model_path="/b/m.gguf"))
    assert not store.is_failed("rig-x", "model-a", cfg.replace(n_ubatch=2048))
    assert not store.is_failed("rig-y", "model-a", cfg) and not store.is_failed("rig-x", "model-b", cfg)
    assert store.failures("rig-x", "model-a")[0]["kind"] == "oom"
    assert config_key(cfg) != config_key(cfg.replace(flash_attn="on"))


WRITER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_tuner_store import _result
from moetui.config import RunConfig
from moetui.tuner import ProfileStore
store = ProfileStore(Path({root!r}))
tag = sys.argv[1]
for i in range(60):
    store.put(_result("same", n=2 + (i % 5)))
    store.record_failure("rig-x", "model-same", RunConfig(model_path="/m", n_ubatch=8 + i, n_batch=4096), "oom", tag)
"""


def test_two_tunes_at_once_do_not_corrupt_the_store(tmp_path):
    script = WRITER.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script, tag]) for tag in ("one", "two")]
    store = ProfileStore(tmp_path)
    reads = 0
    while any(p.poll() is None for p in procs):
        r = store.get("rig-x", "model-same", "0.3.36")
        if r is not None:
            reads += 1
            assert r.best is r.probes[-1]
        time.sleep(0.005)
    assert all(p.wait() == 0 for p in procs)
    assert store.warnings == [] and reads > 0
    assert store.get("rig-x", "model-same", "0.3.36") is not None
    assert len(store.failures("rig-x", "model-same")) == 60  # same configs from both: one record each
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_profile_answers_only_what_it_was_tuned_for(tmp_path):
    r = _result()
    r.best.config = r.best.config.replace(n_ctx=4096)
    r.settings = Settings(n_ctx=4096, vram_margin_bytes=512 << 20, cache_type="q8_0")
    store = ProfileStore(tmp_path)
    store.put(r)
    back = store.get("rig-x", "model-a", "0.3.36")
    assert (back.n_ctx, back.settings) == (4096, r.settings)  # the settings it was tuned for, whole

    def problem(objective="decode", min_ctx=4096, gpu=True, **asked):
        return back.reuse_problem(objective, Settings(**{"cache_type": "q8_0", **asked}), min_ctx, gpu)

    assert problem(vram_margin_bytes=512 << 20) is None
    assert problem(min_ctx=2048, vram_margin_bytes=0) is None  # less asked: it still holds
    assert "context 4096, below the 8192" in problem(min_ctx=8192)
    assert "VRAM free" in problem(vram_margin_bytes=1 << 30)
    assert problem(vram_margin_bytes=1 << 30, gpu=False) is None  # no GPU: no VRAM to keep
    assert "balanced" in problem("balanced")
    assert "KV cache type q8_0, not f16" in problem(cache_type="f16")  # a forced KV type must match
    assert problem(cache_type=None) is None  # none forced: whatever the tune found stands
    assert "decode" in problem(workload=WORKLOADS["decode"])
    assert "VRAM budget" in problem(vram_budget_bytes=4 << 30)
    back.stopped = "cancelled"
    assert "cancelled" in problem(min_ctx=512, gpu=False)


def test_a_profile_saved_before_the_settings_were_recorded_answers_nothing(tmp_path):
    store = ProfileStore(tmp_path)
    path = store.put(_result())
    d = json.loads(path.read_text())
    del d["settings"]  # what a profile of the first release holds
    d["version"] = 1
    path.write_text(json.dumps(d))
    old = store.get("rig-x", "model-a", "0.3.36")
    assert old is not None and old.settings is None
    assert "does not say which settings" in old.reuse_problem("decode", Settings(), 512, False)
    d.update(version=2, n_ctx_requested=1024, vram_margin_bytes=0, workload=WORKLOADS["decode"].to_dict())
    path.write_text(json.dumps(d))  # format 2 kept the context, the margin and the workload
    two = store.get("rig-x", "model-a", "0.3.36")
    assert two.settings == Settings(n_ctx=1024, vram_margin_bytes=0, workload=WORKLOADS["decode"])
