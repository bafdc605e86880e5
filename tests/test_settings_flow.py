"""One setting changed at each entry point reaches the plan, the tune, the exported lines and the worker's
load unchanged: the context, the KV type, the VRAM margin, the workload, the VRAM budget, the ubatch,
which layers' experts stay in RAM and the draft model, from `moetui plan`, `tune`, `export` and `run`, and
from the Plan, Tune and Best screens (Pilot). One test per setting x path.

Where the tune is checked at its boundary (the options and the plan the tuner makes, no load), the tuner
is the real one; the worker loads are real llama-cpp-python loads of the tiny proxy, and what llama.cpp
was given is read back from the worker (LoadInfo.applied). The VRAM margin only means something on a GPU
rig: those cases run on a GPU rig as the sizing core sees it (this CPU-only build puts "GPU" tensors on the
CPU, so the loads are still real)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from ui_pilot import wait_for

from moetui.cli import build_parser, main
from moetui.cli import run_cmd, tune_cmd
from moetui.config.units import GIB
from moetui.hardware.rig import CPUInfo, GPUInfo, LlamaBuildInfo, MemoryInfo, Rig
from moetui.runtime.client import ModelWorker
from moetui.sizing.settings import DEFAULT_VRAM_MARGIN, Settings
from moetui.sizing.workload import WORKLOADS
from moetui.tuner import ProfileStore
from moetui.tuner.engine import Tuner
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.export import render_export

SIZE = (100, 30)
GGML_Q8_0 = 8
MARGIN = int(1.5 * GIB)

# setting -> (the CLI flags, the Settings field and value they make)
CASES: dict[str, tuple[list[str], str, Any]] = {
    "context": (["--ctx", "512"], "n_ctx", 512),
    "kv": (["--kv", "q8_0"], "cache_type", "q8_0"),
    "margin": (["--margin", "1.5"], "vram_margin_bytes", int(1.5 * GIB)),
    "workload": (["--workload", "decode"], "workload", WORKLOADS["decode"]),
    "budget": ([], "vram_budget_bytes", None),  # the flag's value depends on the rig: set by _split_rig
    "ubatch": (["--ubatch", "256"], "n_ubatch", 256),
    "experts": (["--experts-in-ram", "first"], "experts_in_ram", "first"),
    "draft": ([], "draft_path", None),  # the tiny draft's path: set by _split_rig
}
NEW_CASES = ("budget", "ubatch", "experts", "draft")  # the CLI's plan and export of these plan on the fake GPU rig


def gpu_rig(free: int | None = None) -> Rig:
    """A GPU rig as the sizing core sees it (the margin matters only where a GPU holds weights), with
    FREE_VRAM free: with the 1.5 GiB margin some experts stay in RAM, with the default one all fit."""
    free = free or FREE_VRAM
    return Rig(name="fake GPU rig", gpus=[GPUInfo(name="Fake GPU", vendor="nvidia", vram_total_bytes=free,
                                                  vram_free_bytes=free, mem_bandwidth_gbs=1000,
                                                  pcie_bandwidth_gbs=25)],
               cpu=CPUInfo(physical_cores=2, logical_cores=2),
               memory=MemoryInfo(total_bytes=8 << 30, available_bytes=6 << 30),
               build=LlamaBuildInfo(installed=True, version="test", gpu_offload=True, backends=["CUDA", "CPU"]),
               ram_bandwidth_gbs=20, fingerprint="rig-fake-gpu")


def _split_free() -> int:
    """The free VRAM for which a plan with the 1.5 GiB margin keeps some experts in RAM (sizing is pure)."""
    from moetui.sizing.plan import PlanOptions, plan
    from moetui.model.inspect import inspect_file

    info = inspect_file(_TINY[0])
    for mib in range(8, 4096, 4):
        free = MARGIN + (mib << 20)
        if plan(info, gpu_rig(free), PlanOptions.for_settings(Settings(vram_margin_bytes=MARGIN))).mode == "experts_split":
            return free
    raise AssertionError("no VRAM size splits the experts")


def _part_free() -> int:
    """The free VRAM for which a plan with the default margin keeps the experts of some layers in RAM but not
    all: which layers then depends on --experts-in-ram."""
    from moetui.sizing.plan import PlanOptions, plan
    from moetui.model.inspect import inspect_file

    info = inspect_file(_TINY[0])
    for mib in range(8, 4096, 4):
        free = DEFAULT_VRAM_MARGIN + (mib << 20)
        p = plan(info, gpu_rig(free), PlanOptions.for_settings(Settings()))
        in_ram = [ly.index for ly in p.layers if ly.experts_cpu]
        if p.mode == "experts_split" and 0 < len(in_ram) < len(p.layers) - 1:
            return free
    raise AssertionError("no VRAM size keeps some layers' experts in RAM and not others")


_TINY: list[Path] = []
FREE_VRAM = 0
PART_FREE = 0


@pytest.fixture(autouse=True)
def _split_rig(tiny_moe: Path, tiny_draft: Path) -> None:
    global FREE_VRAM, PART_FREE
    CASES["draft"] = (["--draft", str(tiny_draft)], "draft_path", str(tiny_draft))
    if not FREE_VRAM:
        _TINY.append(tiny_moe)
        FREE_VRAM = _split_free()
        PART_FREE = _part_free()
        # a VRAM budget of what the 1.5 GiB margin leaves: with the default margin, the budget splits the experts
        CASES["budget"] = (["--vram-budget", repr((FREE_VRAM - MARGIN) / GIB)], "vram_budget_bytes", FREE_VRAM - MARGIN)


def _experts_layers(patterns: str) -> set[int]:
    """The layers whose experts an -ot value (or an override name list) puts in RAM."""
    import re

    found: set[int] = set()
    for m in re.finditer(r"blk\\?\.\(?([0-9|]+)\)?\\?\.", patterns):
        found.update(int(x) for x in m.group(1).split("|"))
    return found


# ---- what each setting looks like where it arrives --------------------------------------------------------
def check_plan(case: str, plan: Any) -> None:
    """The plan made for the setting."""
    c = plan.config
    if case == "context":
        assert c.n_ctx == 512
    elif case == "kv":
        assert (c.cache_type_k, c.cache_type_v) == ("q8_0", "q8_0")
    elif case in ("margin", "budget"):
        assert list(plan.budgets.values())[0] == FREE_VRAM - MARGIN
        assert plan.mode == "experts_split"  # some experts in RAM: what the default margin would not do
    elif case == "ubatch":
        assert c.n_ubatch == 256
    elif case == "experts":  # the lowest layers' experts in RAM, the highest on the GPU (the default: the reverse)
        in_ram = [ly.index for ly in plan.layers if ly.experts_cpu]
        assert in_ram and in_ram[0] == 0 and plan.layers[-1].index not in in_ram, in_ram
    elif case == "draft":
        assert c.draft is not None and c.draft.model_path == CASES["draft"][2]
    else:
        assert plan.workload == WORKLOADS["decode"]


def check_lines(case: str, argv: list[str], notes: list[str]) -> None:
    """The exported llama-server line (argv) and the notes it carries."""
    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    if case == "context":
        assert value("-c") == "512"
    elif case == "kv":
        assert (value("-ctk"), value("-ctv")) == ("q8_0", "q8_0")
    elif case == "margin":
        assert any("- 1.50 GiB margin" in n for n in notes), notes
    elif case == "budget":
        assert any("VRAM budget (--vram-budget) = 0.70 GiB budget" in n for n in notes), notes
        assert "-ot" in argv or "-ncmoe" in argv  # experts in RAM: what the default margin alone would not do
    elif case == "ubatch":
        assert value("-ub") == "256"
    elif case == "experts":  # llama.cpp's --n-cpu-moe N keeps the first N layers' experts in RAM
        layers = set(range(int(value("-ncmoe")))) if "-ncmoe" in argv else _experts_layers(value("-ot"))
        assert 0 in layers and 3 not in layers, argv
    elif case == "draft":
        assert value("-md") == CASES["draft"][2]
    else:
        assert any("of the decode workload" in n for n in notes), notes


def check_load(case: str, info: Any, cfg: Any) -> None:
    """What llama.cpp was given when the worker loaded the config (read back by the worker)."""
    if case == "context":
        assert info.applied["n_ctx"] == 512 == info.n_ctx
    elif case == "kv":
        assert info.applied["type_k"] == info.applied["type_v"] == GGML_Q8_0
    elif case == "margin":  # the experts planned into RAM for the margin are what llama.cpp overrode
        assert any("- 1.50 GiB margin" in n for n in cfg.notes) and cfg.overrides
        assert [n for n in info.buffers.overridden if "exps" in n]
    elif case == "budget":  # the experts planned into RAM for the budget are what llama.cpp overrode
        assert any("VRAM budget (--vram-budget)" in n for n in cfg.notes) and cfg.overrides
        assert [n for n in info.buffers.overridden if "exps" in n]
    elif case == "ubatch":
        assert info.applied["n_ubatch"] == 256
    elif case == "experts":  # llama.cpp put the first layer's experts in RAM, and not the last one's
        layers = _experts_layers(" ".join(n for n in info.buffers.overridden if "exps" in n))
        assert 0 in layers and 3 not in layers, info.buffers.overridden
    elif case == "draft":  # the draft model was loaded beside the target
        assert cfg.draft is not None and info.draft_buffers is not None
    else:  # a CPU load runs the same for any workload: the config handed over was planned for it
        assert any("of the decode workload" in n for n in cfg.notes)


def load(cfg: Any) -> Any:
    with ModelWorker() as worker:
        return worker.start(cfg)


def rig_for_case(case: str) -> Rig:
    """Every setting planned on a GPU rig (the margin needs one; the rest do not mind); the experts' order
    on one where some layers' experts fit on the GPU and others do not."""
    return gpu_rig(PART_FREE if case == "experts" else None)


# ---- the command line ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_cli_plan(case: str, tiny_moe: Path, capsys: pytest.CaptureFixture[str],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    flags, _, _ = CASES[case]
    if case in NEW_CASES:  # the fake GPU rig: what `--rig` would name, as the sizing core sees it
        from moetui.cli import plan_cmd

        monkeypatch.setattr(plan_cmd, "rig_for", lambda settings, measuring=False: rig_for_case(case))
    rig = "rtx4090-ddr5-64" if case == "margin" else "rtx3060-ddr4-32"
    assert main(["plan", str(tiny_moe), "--rig", rig, "--json", *flags]) == 0
    p = json.loads(capsys.readouterr().out)
    c = p["config"]
    if case in NEW_CASES:
        assert p["budgets"]["CUDA0"] == (FREE_VRAM - MARGIN if case == "budget" else p["budgets"]["CUDA0"])
        in_ram = [ly["index"] for ly in p["layers"] if ly["experts_cpu"]]
        if case == "budget":
            assert p["mode"] == "experts_split" and any("--vram-budget" in n for n in p["explanation"])
        elif case == "ubatch":
            assert c["n_ubatch"] == 256
        elif case == "draft":
            assert c["draft"]["model_path"] == CASES["draft"][2]
        else:
            assert in_ram and in_ram[0] == 0 and p["layers"][-1]["index"] not in in_ram, in_ram
    elif case == "context":
        assert c["n_ctx"] == 512
    elif case == "kv":
        assert (c["cache_type_k"], c["cache_type_v"]) == ("q8_0", "q8_0")
    elif case == "margin":
        assert any("- 1.50 GiB margin" in n for n in p["explanation"]), p["explanation"]
    else:
        assert p["workload"]["name"] == "decode"


@pytest.mark.parametrize("case", CASES)
def test_cli_tune(case: str, tiny_moe: Path, tmp_path: Path) -> None:
    """`moetui tune`'s flags -> TuneOptions.settings -> the tuner's plan (checked at the boundary: no load)."""
    flags, field, value = CASES[case]
    args = build_parser(only="tune").parse_args(["tune", str(tiny_moe), *flags])
    options = tune_cmd.options_from_args(args)
    assert getattr(options.settings, field) == value
    tuner = Tuner(str(tiny_moe), rig_for_case(case), options, store=ProfileStore(tmp_path))
    if case == "draft":  # not planned in: the search's draft dimension tries it, with this file
        tuner.make_plan()
        space = tuner.space(tuner.start_config())
        assert "draft" in space.dimensions and space.draft_path == value
        return
    check_plan(case, tuner.make_plan())
    if case == "context":
        assert tuner.min_ctx() == 512
    if case in ("kv", "ubatch"):  # forced by the user: the tuner does not search it away
        dimension = "cache_type" if case == "kv" else "ubatch"
        assert dimension not in tuner.space(tuner.start_config()).dimensions


@pytest.mark.parametrize("case", CASES)
def test_cli_export(case: str, tiny_moe: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    flags, _, _ = CASES[case]
    if case in NEW_CASES:
        from moetui.cli import export_cmd

        monkeypatch.setattr(export_cmd, "rig_for", lambda settings, measuring=False: rig_for_case(case))
    assert main(["export", str(tiny_moe), "--rig", "rtx4090-ddr5-64", "--tool", "server", "--json", *flags]) == 0
    out = capsys.readouterr()
    d = json.loads(out.out)
    check_lines(case, d["argv"], d["notes"])
    assert "moetui: using the planned config: the plan for this rig" in out.err  # which config, and why


@pytest.mark.parametrize("case", CASES)
def test_cli_run(case: str, tiny_moe: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
    """`moetui run`'s flags -> the config in force -> a real worker load."""
    flags, _, _ = CASES[case]
    monkeypatch.setattr(run_cmd, "rig_for", lambda settings, measuring=False: rig_for_case(case))
    args = build_parser(only="run").parse_args(["run", str(tiny_moe), *flags])
    cfg = run_cmd.config_from_args(args, planned=True, prefer_tuned=True)
    assert "moetui: using the planned config" in capsys.readouterr().err
    check_load(case, load(cfg), cfg)


# ---- the screens ---------------------------------------------------------------------------------------------
async def _app(tiny_moe: Path, pilot_body: Any) -> None:
    app = MoetuiApp(model_path=str(tiny_moe), rig=gpu_rig(), detect=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
        await pilot_body(app, pilot)


async def _after_plan(app: MoetuiApp, pilot: Any, case: str) -> None:
    """The plan, the tune's options, the exported line and Chat's load, for the app's settings now."""
    from moetui.ui.screens.tune import TuneScreen

    await wait_for(pilot, lambda: app.state.plan is not None and not app.state.planning, what="the new plan")
    check_plan(case, app.state.plan)
    if not app.is_screen_installed("tune"):
        app.install_screen(TuneScreen(), "tune")
    tune = app.get_screen("tune")
    await app.push_screen("tune")
    await wait_for(pilot, lambda: app.screen is tune, what="Tune")
    options = tune.options()
    assert options.settings == app.state.settings  # the tune gets the same object the plan was made with
    cfg = app.state.active_config()
    text, _ = render_export(cfg, "server")
    command = [ln for ln in text.splitlines() if ln and not ln.startswith("#")][-1]
    check_lines(case, command.split(), [ln.removeprefix("# note: ") for ln in text.splitlines()])
    await pilot.press("c")
    await wait_for(pilot, lambda: getattr(app.screen, "load_info", None) is not None, timeout=60, what="Chat's load")
    check_load(case, app.screen.load_info, app.screen.loaded_config)


PLAN_KNOBS = {"context": ("#plan-ctx", "512"), "margin": ("#plan-margin", "1.5")}


@pytest.mark.parametrize("case", ["context", "kv", "margin"])
def test_plan_screen(case: str, tiny_moe: Path) -> None:
    from textual.widgets import Input, Select

    async def body(app: MoetuiApp, pilot: Any) -> None:
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen.query("#plan-ctx"), what="Plan")
        app.state.plan = None
        if case == "kv":
            app.screen.query_one("#plan-kv", Select).value = "q8_0"
        else:
            knob, text = PLAN_KNOBS[case]
            app.screen.query_one(knob, Input).value = text
        _, field, value = CASES[case]
        await wait_for(pilot, lambda: getattr(app.state.settings, field) == value, what="the settings")
        await _after_plan(app, pilot, case)

    asyncio.run(_app(tiny_moe, body))


def test_tune_screen_workload(tiny_moe: Path) -> None:
    from textual.widgets import Select

    from moetui.ui.screens.tune import TuneScreen

    async def body(app: MoetuiApp, pilot: Any) -> None:
        tune = TuneScreen()
        app.install_screen(tune, "tune")
        await app.push_screen("tune")
        await wait_for(pilot, lambda: app.screen is tune, what="Tune")
        app.state.plan = None
        tune.query_one("#tune-workload", Select).value = "decode"
        await wait_for(pilot, lambda: app.state.settings.workload == WORKLOADS["decode"], what="the settings")
        await app.pop_screen()
        await _after_plan(app, pilot, "workload")

    asyncio.run(_app(tiny_moe, body))


def test_best_screen_workload(tiny_moe: Path) -> None:
    """Best's workload picker edits the app's settings; its flow plans and tunes with them (a real tiny tune)."""
    from textual.widgets import Select

    from moetui.tuner import TuneOptions
    from moetui.ui.screens.best import BestConfigScreen

    async def body(app: MoetuiApp, pilot: Any) -> None:
        best = BestConfigScreen(autostart=False, budget_s=5, tune_options=TuneOptions(
            n_prompt=64, n_gen=16, reps=3, dimensions=("threads",), max_probes=1))
        app.install_screen(best, "best")
        await app.push_screen("best")
        await wait_for(pilot, lambda: app.screen is best, what="Best")
        best.query_one("#best-workload", Select).value = "decode"
        await wait_for(pilot, lambda: app.state.settings.workload == WORKLOADS["decode"], what="the settings")
        best.action_start()
        await wait_for(pilot, lambda: best.outcome is not None, timeout=240, what="the flow")
        assert best.outcome == "done", best.outcome
        assert best.result is not None and best.result.settings == app.state.settings  # the tune's settings
        check_plan("workload", app.state.plan)
        await wait_for(pilot, lambda: getattr(app.screen, "load_info", None) is not None, timeout=60,
                       what="Chat's load")
        # Chat loads the winner tuned for these settings: the resolver takes the profile as answering them
        active = app.state.active()
        assert active.source == "tuned" and app.screen.loaded_config == active.config == best.result.best.config
        assert app.screen.load_info.applied["n_ctx"] == best.result.best.config.n_ctx

    asyncio.run(_app(tiny_moe, body))


def test_a_setting_refused_names_its_field() -> None:
    """Validated once, field by field: the CLI names the flag, a screen the knob."""
    from moetui.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        Settings(n_ctx=5)
    assert refused.value.field == "n_ctx"
    args = build_parser(only="plan").parse_args(["plan", "x", "--margin", "-1"])
    from moetui.cli.settings_args import settings_from_args

    with pytest.raises(ConfigError, match="--margin"):
        settings_from_args(args)


def test_a_plan_only_path_loads_neither_the_tuner_engine_nor_the_runtime() -> None:
    """`moetui plan` and `moetui export` ask the resolver, which reads profiles without the engine."""
    import subprocess
    import sys

    code = ("import sys\nfrom moetui.cli import main\n"
            "main(['export', 'qwen3-30b-a3b', '--rig', 'rtx3060-ddr4-32', '--ctx', '4096', '--tool', 'server'])\n"
            "main(['plan', 'qwen3-30b-a3b', '--rig', 'rtx3060-ddr4-32', '--json'])\n"
            "loaded = [m for m in ('moetui.tuner.engine', 'moetui.tuner.runner', 'moetui.runtime.client') "
            "if m in sys.modules]\nprint('LOADED', loaded)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "LOADED []" in p.stdout and " -c 4096 " in p.stdout


def test_a_context_set_after_a_tune_is_the_one_chat_and_export_use(tiny_moe: Path) -> None:
    """#28: context 4096 set on Plan after a tune at 32768; Home said "tuned config in use", Chat loaded 32768
    and Export wrote -c 32768. The resolver runs the tuned winner at the context asked for, and a profile
    tuned for another workload is not used at all (the plan is, and says why)."""
    from moetui.config import RunConfig
    from moetui.resolver import ConfigSource, choose
    from moetui.runtime.bench import BenchResult
    from moetui.tuner import Probe, TuneResult

    best = Probe(0, RunConfig(model_path=str(tiny_moe), n_ctx=32768, n_ubatch=256), {}, "ub 256", status="ok",
                 score=50.0, bench=BenchResult(64, 16, 3, [500.0] * 3, [50.0] * 3))
    tuned = TuneResult(best=best, baseline=None, plan_probe=best, predicted={}, probes=[best], rig_fingerprint="r",
                       model_id="m", llama_version="v", objective="turn", elapsed_s=1.0, stopped="converged")
    rig = gpu_rig()
    active = choose(tuned=tuned, settings=Settings(n_ctx=4096), rig=rig)
    assert active.source is ConfigSource.TUNED and active.config.n_ctx == 4096 and active.config.n_ubatch == 256
    text, _ = render_export(active.config, "server")
    assert " -c 4096 " in text and "32768" not in text.splitlines()[-1]
    with ModelWorker() as worker:  # what Chat loads: the same config, at 4096
        assert worker.start(active.config).applied["n_ctx"] == 4096
    other = Settings(n_ctx=4096, workload=WORKLOADS["decode"])
    from moetui.model.inspect import inspect_file
    from moetui.resolver import plan_for

    plan = plan_for(inspect_file(tiny_moe), rig, other, str(tiny_moe))
    planned = choose(tuned=tuned, planned=plan, settings=other, rig=rig)
    assert planned.source is ConfigSource.PLANNED and planned.config.n_ctx == 4096
    assert "not used: the saved profile was tuned for chat" in planned.reason


def test_cli_rpc_hosts_reach_the_plan_the_tune_the_line_and_the_load(tiny_moe: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--rpc HOST:PORT (a real ggml-rpc-server on 127.0.0.1) from `moetui plan`, `tune`, `export` and `run`: the
    servers are asked for their devices (settings_args.rig_for), the plan splits the layers over them (this
    host is given 64 MiB of RAM, too little for the model alone), the line passes --rpc, and llama.cpp puts
    layers on the server when the worker loads `run`'s config."""
    from rpc_helpers import rpc_servers

    from moetui.cli import settings_args
    from moetui.export.llama_tools import ensure_llama_tools

    small = Rig(name="64 MiB host", gpus=[], cpu=CPUInfo(physical_cores=2, logical_cores=2),
                memory=MemoryInfo(total_bytes=64 << 20, available_bytes=64 << 20),
                build=LlamaBuildInfo(installed=True, version="test", gpu_offload=False, backends=["CPU", "RPC"]),
                ram_bandwidth_gbs=20, fingerprint="rig-64mib")
    monkeypatch.setattr(settings_args, "load_rig", lambda name: dataclasses.replace(small, remotes=[]))
    ensure_llama_tools(["ggml-rpc-server"], variant="rpc")
    with rpc_servers(tmp_path, n=1) as procs:
        addr = procs[0][0]
        assert main(["plan", str(tiny_moe), "--json", "--rpc", addr]) == 0
        assert json.loads(capsys.readouterr().out)["config"]["rpc_servers"] == [addr]
        tune_args = build_parser(only="tune").parse_args(["tune", str(tiny_moe), "--rpc", addr])
        tuner = Tuner(str(tiny_moe), settings_args.rig_for(tune_cmd.options_from_args(tune_args).settings,
                                                           measuring=True),
                      tune_cmd.options_from_args(tune_args), store=ProfileStore(tmp_path))
        assert tuner.make_plan().config.rpc_servers == [addr]
        assert main(["export", str(tiny_moe), "--tool", "server", "--json", "--rpc", addr]) == 0
        argv = json.loads(capsys.readouterr().out)["argv"]
        assert argv[argv.index("--rpc") + 1] == addr
        cfg = run_cmd.config_from_args(build_parser(only="run").parse_args(["run", str(tiny_moe), "--rpc", addr]),
                                       planned=True, prefer_tuned=True)
        log = load(cfg).log_path.read_text(errors="replace")  # llama.cpp's own account of where it put the layers
        assert "assigned to device RPC0," in log and f"RPC0[{addr}] model buffer size" in log
