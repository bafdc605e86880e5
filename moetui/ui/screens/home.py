"""Home: what moetui knows so far (rig, selected model, plan or tuned config) and the one-click button."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from moetui.hardware.bandwidth import bandwidth_words
from moetui.hub.cache import needs_download
from moetui.hardware.detect import describe
from moetui.ui.keys import app_action_bindings
from moetui.ui.speed_words import factors_words, measured_words
from moetui.ui.state import app_state
from moetui.ui.widgets.format import gib, plan_mode, tps


class HomeScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = app_action_bindings("home")

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="home-body"):
            yield Button(r"★ Best config for my rig \[b]", id="best", variant="success")
            yield Static(id="home-rig", classes="card")
            yield Static(id="home-model", classes="card")
            yield Static(id="home-plan", classes="card")
            with Horizontal(id="home-nav"):
                for name, label in (("rig", "Rig [r]"), ("models", "Models [m]"), ("plan", "Plan [p]"),
                                    ("tune", "Tune [t]"), ("chat", "Chat [c]"), ("export", "Export [e]")):
                    # the key in brackets is the footer's "screens" key; escaped, or markup eats it as a style
                    yield Button(label.replace("[", r"\["), id=f"nav-{name}", classes="nav")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_from_state()

    def on_screen_resume(self) -> None:
        self.refresh_from_state()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        self.app.action_open("best" if bid == "best" else bid.removeprefix("nav-"))  # type: ignore[attr-defined]

    def refresh_from_state(self) -> None:
        s = app_state(self.app)
        if s.rig is not None:
            rig = f"[b]Rig[/b]  {describe(s.rig)}" + (f"  [$text-muted]({s.rig.source})[/]" if s.rig.source != "detected" else "")
            probe = s.rig.bandwidth_probe
            if s.rig.ram_bandwidth_gbs and probe is not None and s.rig.source == "detected":
                # when and how: a figure measured under load once read 9 GB/s where 24 was true
                rig += f"\n      RAM bandwidth {bandwidth_words(s.rig.ram_bandwidth_gbs, probe)}"
                if probe.note:
                    rig += f"\n      [$text-warning]{escape(probe.note)}[/]"
            elif s.rig.ram_bandwidth_gbs:
                rig += f"\n      RAM bandwidth {s.rig.ram_bandwidth_gbs:.0f} GB/s"
            if s.rig.build.advice:
                rig += f"\n      [$text-warning]{s.rig.build.advice.splitlines()[0]}[/]"
        else:
            rig = "[b]Rig[/b]  detecting…" if s.detecting else "[b]Rig[/b]  not detected"
        self.query_one("#home-rig", Static).update(rig)

        if s.model_info is not None:
            m = s.model_info
            moe = (f"{m.n_expert} experts, {m.n_expert_used} active" if m.n_expert else "dense")
            model = (f"[b]Model[/b]  {m.name or Path(s.model_path or m.path).name}\n       {m.architecture}, "
                     f"{m.n_layers} layers, {moe}, {gib(m.total_bytes)}")
        elif s.model_path:
            model = f"[b]Model[/b]  {s.model_path}"
        else:
            model = "[b]Model[/b]  none selected: press [b]m[/b] to pick one, or the button above"
        if s.model_path and needs_download(s.model_path):
            model += "\n       [$text-warning]not downloaded yet (planned without the file); Chat (c) or Best (b) downloads it[/]"
        if s.loading_model:
            model += f"\n       [$text-muted]reading {escape(s.loading_model)}…[/]"
        if s.model_error:
            model += f"\n       [$text-error]✗ {escape(s.model_error)}[/]"
        self.query_one("#home-model", Static).update(model)

        if s.plan is not None:
            p = s.plan
            plan = (f"[b]Plan[/b]   {plan_mode(p.mode)}, context {p.config.n_ctx}, KV {p.config.cache_type_k}"
                    + (f", --n-cpu-moe {p.n_cpu_moe}" if p.n_cpu_moe else "")
                    + f"\n       predicted {tps(p.decode_tps)} tok/s decode, {tps(p.prompt_tps)} tok/s prompt"
                    + f" {factors_words(p)}")
        elif s.plan_error:
            plan = f"[b]Plan[/b]   [$text-error]{s.plan_error}[/]"
        else:
            plan = "[b]Plan[/b]   —"
        active = s.active()  # the resolver's answer: a tuned profile only where it answers the settings
        if active is not None and active.source in ("tuned", "chosen"):
            measured = measured_words(s.tuned, active.config) if active.source == "tuned" and s.tuned else ""
            plan += f"\n       [$text-success]{active.source} config in use[/]{measured}, context {active.config.n_ctx}"
        elif s.tuned is not None and active is not None:
            plan += f"\n       [$text-muted]{escape(active.reason)}[/]"
        self.query_one("#home-plan", Static).update(plan)
