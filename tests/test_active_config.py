"""One answer to "which config is in force" (moetui.resolver), the same in `moetui plan`, `moetui export`,
`moetui run`, the app's Plan screen and the Best-config flow: after a real tune, the tuned model runs its
saved profile everywhere, and another model on the same rig is planned everywhere with the efficiency
that tune measured (the plan's notes carry its predicted speeds, so equal configs mean equal factors)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from textual.message import Message
from ui_pilot import wait_for

from moetui.cli import build_parser
from moetui.cli.run_cmd import config_from_args
from moetui.config import RunConfig
from moetui.hardware import detect_rig
from moetui.model.inspect import inspect_file
from moetui.resolver import ConfigSource, choose, resolve, saved_profile
from moetui.sizing.settings import Settings
from moetui.ui.app import MoetuiApp
from moetui.ui.screens.best import BestConfigScreen
from moetui.ui.screens.best_messages import FlowReporter
from moetui.ui.state import PlanChanged

QUICK = ["-p", "32", "-n", "8", "-r", "3"]


def moetui(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "moetui", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def comparable(cfg: dict) -> dict:
    """A config as a dict, less the note on free RAM (other processes move it between two detections)."""
    # the free-RAM budget changes between two detections on a shared machine; the seconds per turn is
    # derived from the predicted tok/s, which are compared, and rounds across a boundary on tiny changes
    return {**cfg, "notes": [n for n in cfg["notes"] if " GB budget (" not in n and " GiB budget (" not in n
                             and " per turn of the " not in n]}


def exported(model: Path) -> tuple[dict, str]:
    proc = moetui("export", str(model), "--tool", "config", "--json")
    return json.loads(proc.stdout)["config"], proc.stderr


@dataclass
class KeptMessages(FlowReporter):
    """Best config's reporter for a step called on its own: keeps the messages instead of posting them."""

    to_screen: list[Message] = field(default_factory=list)
    to_app: list[Message] = field(default_factory=list)

    def show(self, message: Message) -> None:
        self.to_screen.append(message)

    def tell_app(self, message: Message) -> None:
        self.to_app.append(message)


def test_tuned_and_planned_configs_agree_everywhere(tiny_moe: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    other = tiny_model("qwen3-30b-a3b", "Q8_0")  # another model, never tuned
    tuned = json.loads(moetui("tune", str(tiny_moe), "--json", "--budget", "60", "--dimensions", "flash_attn",
                              "--max-probes", "1", *QUICK).stdout)
    assert tuned["efficiency"]["source"].startswith("tuner:")
    rig = detect_rig()  # this machine, as the CLI saw it (the bandwidth the CLI measured is cached)

    # the tuned model: its saved profile, in export, run and the module itself
    profile = saved_profile(rig, inspect_file(tiny_moe).identity, str(tiny_moe))
    assert profile is not None
    cfg, err = exported(tiny_moe)
    assert cfg == profile.best.config.to_dict() and "using the tuned profile" in err
    active = resolve(str(tiny_moe), Settings(), rig)
    assert active.source is ConfigSource.TUNED and active.config == profile.best.config
    run_args = build_parser().parse_args(["run", str(tiny_moe)])
    assert config_from_args(run_args, planned=True, prefer_tuned=True) == profile.best.config

    # another model on the same rig: planned, with the factors that tune measured
    planned = json.loads(moetui("plan", str(other), "--json").stdout)
    assert planned["efficiency"]["source"] == tuned["efficiency"]["source"]
    cfg, err = exported(other)
    assert comparable(cfg) == comparable(planned["config"]) and "tuned profile" not in err
    assert any("tok/s" in n for n in comparable(cfg)["notes"])  # the predicted speeds are compared
    active = resolve(str(other), Settings(), rig)
    assert active.source is ConfigSource.PLANNED and "efficiency a tune measured" in active.reason
    assert comparable(active.config.to_dict()) == comparable(planned["config"])
    run_args = build_parser().parse_args(["run", str(other)])
    assert comparable(config_from_args(run_args, planned=True, prefer_tuned=True).to_dict()) == comparable(planned["config"])

    async def in_the_app() -> None:
        app = MoetuiApp(model_path=str(other), rig=rig, detect=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
            assert comparable(app.state.plan.config.to_dict()) == comparable(planned["config"])  # the Plan screen's
            assert app.state.active().source is ConfigSource.PLANNED
            best = BestConfigScreen()
            said = KeptMessages(best, threading.Event())
            _, best_plan = best._step_plan(other, None, rig, Settings(), said)
            assert comparable(best_plan.config.to_dict()) == comparable(planned["config"])  # Best config's plan step
            assert [m.plan for m in said.to_app if isinstance(m, PlanChanged)] == [best_plan]  # and what it tells the App

    asyncio.run(in_the_app())


def test_what_is_chosen_by_hand_wins_and_a_file_not_planned_runs_llama_defaults(tiny_moe: Path) -> None:
    picked = RunConfig(model_path=str(tiny_moe), n_ctx=512)
    assert choose(chosen=picked, planned=None).source is ConfigSource.CHOSEN
    fallback = choose(defaults_for=str(tiny_moe))
    assert fallback is not None and fallback.source is ConfigSource.DEFAULTS
    assert fallback.config == RunConfig(model_path=str(tiny_moe))
    assert choose(defaults_for=str(tiny_moe.parent / "missing.gguf")) is None
    later = resolve(str(tiny_moe.parent / "not-downloaded-yet.gguf"), Settings(), None)
    assert later.source is ConfigSource.DEFAULTS and "not there yet" in later.reason
