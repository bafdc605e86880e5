"""The repacked-kernel probe against the real llama.cpp of this machine, and what it changes downstream:
the plan turns repacking off where it crashes, export writes --no-repack, parse-back keeps it."""

from __future__ import annotations

import pytest

from moetui.config import RunConfig
from moetui.export.commandline import bench_command, export_command
from moetui.export.flags import vendored_flags
from moetui.export.parse import parse_server_text
from moetui.hardware import load_preset
from moetui.hardware.repack import ENV, repack_safe, run_probe
from moetui.sizing.plan import PlanOptions, plan
from moetui.model.virtual import model_info_for_shape


def test_verdict_matches_what_llama_cpp_really_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    check = repack_safe(use_cache=False)
    with_repack = run_probe(repack=True)
    if check.safe:
        assert with_repack.returncode == 0 and "ok" in with_repack.stdout, with_repack.stderr[-2000:]
    else:
        assert with_repack.returncode < 0  # killed by a signal, as the verdict says
        assert "--no-repack" in check.reason
    without = run_probe(repack=False)
    assert without.returncode == 0 and "ok" in without.stdout, without.stderr[-2000:]


def test_env_forces_the_answer_without_a_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "off")
    assert repack_safe() == repack_safe().__class__(False, f"{ENV}=off")
    monkeypatch.setenv(ENV, "on")
    assert repack_safe().safe and not repack_safe().probed


def test_build_without_amx_needs_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    check = repack_safe("CPU : AVX2 = 1 | REPACK = 1 |")
    assert check.safe and not check.probed and "no AMX" in check.reason


def _rig(repack_ok: bool):  # type: ignore[no-untyped-def]
    rig = load_preset("rtx4090-ddr5-64")
    rig.build.repack_safe = repack_ok
    rig.build.repack_note = None if repack_ok else "AMX kernels die with SIGILL here"
    return rig


def test_plan_turns_repacking_off_where_it_crashes_and_export_says_so() -> None:
    model = model_info_for_shape("qwen3-30b-a3b", "Q4_K_M")
    on = plan(model, _rig(True), PlanOptions(model_path="m.gguf"))
    off = plan(model, _rig(False), PlanOptions(model_path="m.gguf"))
    assert on.config.repack and not off.config.repack
    assert any("--no-repack" in w and "SIGILL" in w for w in off.explanation)
    server = export_command(off.config, "server", vendored_flags("server"))
    assert "-nr" in server.argv and "-nr" not in export_command(on.config, "server", vendored_flags("server")).argv
    assert parse_server_text(server.render("posix")) == off.config
    bench = bench_command(off.config, vendored_flags("bench")).argv
    assert bench[bench.index("--repack") + 1] == "0"


def test_config_file_keeps_repack() -> None:
    cfg = RunConfig(model_path="m.gguf", repack=False)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
