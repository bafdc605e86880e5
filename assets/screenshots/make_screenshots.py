"""Write the README's SVG screenshots of the UI-core screens (80x24, dark, plus the plan in the light
theme at 120x40). Deterministic: a reference rig and a shape preset, no live gauges.

    python3 assets/screenshots/make_screenshots.py [--out assets/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "qwen3-30b-a3b:Q8_0"  # 32 GB: hybrid on a 24 GB card, so the placement drawing shows both sides
RIG = "rtx4090-ddr5-64"
SHOTS = [("home", "h", (80, 24), False), ("rig", "r", (80, 24), False), ("models", "m", (80, 24), False),
         ("plan", "p", (80, 24), False), ("export", "e", (80, 24), False), ("plan-light", "p", (120, 40), True)]


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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # the user's own models and data stay out of the pictures
        os.environ.update(MOETUI_DATA_DIR="/tmp/moetui-screenshots/data",  # a stable path on the Export shot
                           HF_HUB_CACHE=str(Path(tmp) / "hf"),
                          HOME=tmp, OLLAMA_MODELS=str(Path(tmp) / "ollama"))
        from moetui.ui.screens.rig import RigScreen

        RigScreen.LIVE = False
        for name, key, size, light in SHOTS:
            print(asyncio.run(shoot(args.out, name, key, size, light)))


if __name__ == "__main__":
    main()
