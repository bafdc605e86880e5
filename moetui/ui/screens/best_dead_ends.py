"""Best config's dead ends, turned into choices (moetui.ui.widgets.choice_dialog): nothing in the catalog
reaching the minimum speed, and a hub that cannot be reached. Each choice restarts the flow, or opens the
screen that goes on from there. UI thread only; `screen` is the BestConfigScreen."""

from __future__ import annotations

from typing import Any

from moetui.hub.best_pick import shape_mix
from moetui.model.demo import ensure_demo_model
from moetui.ui.state import ModelSelected
from moetui.ui.widgets.choice_dialog import ChoiceDialog


def nothing_fits_dialog(screen: Any, exc: Any) -> None:
    """The catalog has nothing at the minimum speed: a short table, and lower / take anyway / local."""
    rows = [[c.model.name, c.quant.quant, f"{c.decode_tps:.1f}" if c.decode_tps is not None else "-", c.why_not]
            for c in exc.candidates]
    lower, fastest = exc.lowered_minimum(), exc.fastest
    choices = []
    if lower is not None:
        choices.append(("lower", f"Lower minimum to {lower:g} tok/s"))
    if fastest is not None:
        choices.append(("anyway", "Take the fastest anyway"))  # the table's first row
    choices.append(("local", "Use a local model"))

    def chosen(key: str | None) -> None:
        if key == "lower" and lower is not None:
            screen.min_decode_tps = lower
            screen.action_start()
        elif key == "anyway" and fastest is not None:
            screen.take_ref, screen.picked_shape = fastest.ref, fastest.model.shape
            screen.action_start()
        elif key == "local":
            _open_models(screen)

    screen.app.push_screen(ChoiceDialog(
        f"Nothing in the catalog reaches {exc.min_decode_tps:g} tok/s on this rig",
        "Predicted decode speed of each model's fastest quant that fits, or why none does:",
        choices, ["model", "quant", "tok/s", "why not"], rows), chosen)


def hub_unreachable_dialog(screen: Any, exc: BaseException) -> None:
    """A hub step failed offline: say so, and offer what works without the hub."""
    shape = screen.picked_shape
    choices = [("local", "Local model"), ("demo", "Demo model")]
    if shape:
        choices.append(("proxy", "Plan its proxy"))
    choices.append(("rig", "What-if rig"))

    def chosen(key: str | None) -> None:
        if key == "local":
            _open_models(screen)
        elif key == "demo":
            _use_demo_model(screen)
        elif key == "proxy" and shape:
            screen.app.post_message(ModelSelected(f"{shape}:{shape_mix(shape)}"))
            screen.app.call_later(screen.app.action_open, "plan")
        elif key == "rig":
            screen.app.call_later(screen.app.action_open, "rig")

    screen.app.push_screen(ChoiceDialog(
        "The hub cannot be reached",
        f"{str(exc).splitlines()[0]}\nWhat works offline: your local GGUFs, the demo model (a tiny MoE proxy, "
        "tuned and chatted with right here), the picked model's proxy (exact shapes, for planning) and "
        "what-if rigs (plan for another machine).", choices), chosen)


def _open_models(screen: Any) -> None:
    screen.app.call_later(screen.app.action_open, "models")
    screen.notify("Pick a model with Enter, then b runs Best config on it.", timeout=6)


def _use_demo_model(screen: Any) -> None:
    path = str(ensure_demo_model())  # a 5 MB file written in well under a second
    screen.app.post_message(ModelSelected(path))
    screen.start_on = path
    screen.action_start()
