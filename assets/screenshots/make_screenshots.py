"""Write the README's SVG screenshots of every screen (80x24, dark, plus the plan in the light theme at
120x40). Home, Rig, Models, Plan, Export and Best config are deterministic: a reference rig and a shape
preset, no live gauges, Best config shown before it starts. Tune and Chat are real: a short tune of a tiny
generated proxy model on this machine with llama-cpp-python, then a short reply in Chat with the winner
(the proxy's weights are random, so its reply is noise; the numbers are this machine's).

    python3 assets/screenshots/make_screenshots.py [--out assets/screenshots] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "qwen3-30b-a3b:Q8_0"  # 32 GB: hybrid on a 24 GB card, so the placement drawing shows both sides
RIG = "rtx4090-ddr5-64"
SHOTS = [("home", "h", (80, 24), False), ("rig", "r", (80, 24), False), ("models", "m", (80, 24), False),
         ("plan", "p", (80, 24), False), ("export", "e", (80, 24), False), ("plan-light", "p", (120, 40), True)]


PROXY_DIR = Path("/tmp/moetui-screenshots/models")  # a stable path: it is on the Tune and Chat shots


async def settle(app, pilot, rounds: int = 4) -> None:  # type: ignore[no-untyped-def]
    """Let workers finish; Chat's 2 Hz sampler runs until the screen closes, so not that one."""
    for _ in range(rounds):
        finite = [w for w in app.workers if w.group != "chat-sampler"]
        if finite:  # an empty list means "all of them" to Textual
            await app.workers.wait_for_complete(finite)
        await pilot.pause()


async def until(pilot, cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await pilot.pause(0.1)


async def shoot_best(out: Path) -> Path:
    """Best config for my rig, shown and not started (started, it would download a catalog model)."""
    from moetui.hardware import load_preset
    from moetui.ui.app import MoetuiApp
    from moetui.ui.screens.best import BestConfigScreen

    app = MoetuiApp(model_path=MODEL, rig=load_preset(RIG))
    async with app.run_test(size=(80, 24)) as pilot:
        best = BestConfigScreen(autostart=False)
        app.install_screen(best, "best")
        await settle(app, pilot)
        await pilot.press("b")
        await settle(app, pilot)
        await pilot.pause(0.3)
        return Path(app.save_screenshot(filename="best.svg", path=str(out)))


async def shoot_tune_and_chat(out: Path) -> list[Path]:
    """A real tune (3 probes) of a tiny proxy on this machine, then one short reply in Chat with the winner."""
    from moetui.hardware import detect_rig
    from moetui.model.proxy import write_proxy
    from moetui.model.shapes import load_shape, scaled
    from moetui.tuner import TuneOptions
    from moetui.ui.app import MoetuiApp
    from moetui.ui.screens.tune import TuneScreen

    PROXY_DIR.mkdir(parents=True, exist_ok=True)
    proxy = PROXY_DIR / "qwen3-30b-a3b-tiny-Q4_K_M.gguf"
    if not proxy.exists():
        write_proxy(scaled(load_shape("qwen3-30b-a3b"), "tiny"), proxy, "Q4_K_M")
    # retune: measure even when an earlier run saved a profile; max_probes keeps it to a minute or so
    options = TuneOptions(budget_s=90, n_prompt=64, n_gen=16, reps=3, max_probes=4, retune=True)
    app = MoetuiApp(model_path=str(proxy), rig=detect_rig(measure_bandwidth=False))
    shots = []
    async with app.run_test(size=(80, 24)) as pilot:
        tune = TuneScreen(options=options)
        app.install_screen(tune, "tune")
        await until(pilot, lambda: app.state.plan is not None, 60, "the plan")
        await pilot.press("t")
        await until(pilot, lambda: app.screen is tune, 10, "the Tune screen")
        await pilot.press("s")
        await until(pilot, lambda: not tune.running, 300, "the tune")
        await pilot.pause(0.5)
        shots.append(Path(app.save_screenshot(filename="tune.svg", path=str(out))))

        await pilot.press("c")
        chat = app.screen
        await until(pilot, lambda: getattr(chat, "loaded_config", None) is not None, 120, "Chat's model")
        chat.max_tokens = 40
        await pilot.press(*"Hello! Which experts are in RAM?", "enter")
        await until(pilot, lambda: chat.last_done is not None, 120, "the reply")
        await pilot.pause(0.5)
        shots.append(Path(app.save_screenshot(filename="chat.svg", path=str(out))))
    return shots


async def shoot(out: Path, name: str, key: str, size: tuple[int, int], light: bool) -> Path:
    from moetui.hardware import load_preset
    from moetui.ui.app import MoetuiApp

    app = MoetuiApp(model_path=MODEL, rig=load_preset(RIG), light=light)
    async with app.run_test(size=size) as pilot:
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        await pilot.press(key)
        for _ in range(4):
            await app.workers.wait_for_complete()
            await pilot.pause()
        await pilot.pause(0.3)
        return Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--only", nargs="*", help="just these shots (home, rig, ..., best, tune, chat)")
    args = ap.parse_args()
    wanted = set(args.only or [name for name, *_ in SHOTS] + ["best", "tune", "chat"])
    with tempfile.TemporaryDirectory() as tmp:
        # the user's own models and data stay out of the pictures
        os.environ.update(MOETUI_DATA_DIR="/tmp/moetui-screenshots/data",  # a stable path on the Export shot
                           HF_HUB_CACHE=str(Path(tmp) / "hf"),
                          HOME=tmp, OLLAMA_MODELS=str(Path(tmp) / "ollama"))
        from moetui.ui.screens.rig import RigScreen

        RigScreen.LIVE = False
        for name, key, size, light in SHOTS:
            if name in wanted:
                print(asyncio.run(shoot(args.out, name, key, size, light)))
        if "best" in wanted:
            print(asyncio.run(shoot_best(args.out)))
        if wanted & {"tune", "chat"}:
            for path in asyncio.run(shoot_tune_and_chat(args.out)):
                print(path)


if __name__ == "__main__":
    main()
