"""Plan: the placement drawn layer by layer, memory bars per device, predicted tok/s and the explanation,
with knobs (context, KV type, VRAM headroom, draft model) that re-plan as they change. The plan itself runs
in the App's plan worker (newest request wins), so typing in a knob never blocks the UI."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Select, Static

from moetui.config import CACHE_TYPES
from moetui.config.units import GIB, gib_bytes
from moetui.errors import ConfigError
from moetui.hub.cache import needs_download
from moetui.sizing.plan import MIN_CTX, gpu_usable
from moetui.sizing.settings import Settings
from moetui.ui.speed_words import factors_words, measured_words
from moetui.ui.state import SettingsChanged, app_state
from moetui.ui.keys import app_action_bindings
from moetui.ui.widgets.select_title import show_select_titles
from moetui.ui.widgets.format import plan_mode, tps
from moetui.ui.widgets.memory_bars import MemoryBars
from moetui.ui.widgets.placement_map import PlacementMap

AUTO = "auto"


class PlanScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = app_action_bindings("plan")
    AUTO_FOCUS = "#plan-body"  # not a knob: single-letter keys keep switching screens until one is clicked
    SHOWS_PLAN_ERRORS = True  # the App does not pop a notification for each bad keystroke here

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="plan-knobs"):
            ctx = Input(placeholder="auto", type="integer", id="plan-ctx", classes="knob")
            ctx.border_title = "context"
            yield ctx
            kv = Select([(AUTO, AUTO)] + [(t, t) for t in CACHE_TYPES], value=AUTO, allow_blank=False,
                        id="plan-kv", classes="knob")
            kv.border_title = "KV type"
            yield kv
            margin = Input(placeholder="0.5", type="number", id="plan-margin", classes="knob")
            margin.border_title = "margin GiB"  # VRAM left free (--margin); longer is cut at 80 columns
            yield margin
            draft = Input(placeholder="none (path or shape)", id="plan-draft", classes="knob")
            draft.border_title = "draft model ⏎"
            yield draft
        with VerticalScroll(id="plan-body"):
            yield Static("", id="plan-summary")
            yield Static("", id="plan-error")
            yield Static("[b]Placement[/b] [i](layer by layer)[/i]", classes="section-title")
            yield PlacementMap(id="plan-map")
            yield Static("[b]Memory[/b] [i](planned / budget)[/i]", classes="section-title")
            yield MemoryBars(id="plan-memory")
            yield Static("[b]Why[/b]", classes="section-title")
            yield Static("", id="plan-explanation")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        o: Settings = app_state(self.app).settings
        if o.n_ctx:
            self.query_one("#plan-ctx", Input).value = str(o.n_ctx)
        if o.cache_type:
            self.query_one("#plan-kv", Select).value = o.cache_type
        if o.vram_margin_bytes is not None:
            self.query_one("#plan-margin", Input).value = f"{o.vram_margin_bytes / GIB:g}"
        if o.draft_path:
            self.query_one("#plan-draft", Input).value = o.draft_path
        self._ready = True
        show_select_titles(self)  # the dropdowns' labels, where Textual draws their border
        self.refresh_from_state()

    def on_screen_resume(self) -> None:
        self.refresh_from_state()

    def refresh_from_state(self) -> None:
        s = app_state(self.app)
        p = s.plan
        # VRAM headroom means nothing where no GPU is used (none found, or a build without offload)
        self.set_class(s.rig is not None and not gpu_usable(s.rig), "-no-gpu")
        self.query_one(PlacementMap).plan = p
        self.query_one(MemoryBars).plan = p
        # a knob's bad value stays on show until it is fixed (a redraw for another reason must not hide it)
        self._show_error(getattr(self, "_knob_error", None) or (s.plan_error if s.plan_error and p is None else None))
        if p is None:
            if s.model_info is None:
                summary = "No model selected: press m to pick one."
            elif s.rig is None:
                summary = "Waiting for the rig…"
            else:
                summary = "planning…" if s.planning else ""
            self.query_one("#plan-summary", Static).update(summary)
            self.query_one("#plan-explanation", Static).update("")
            return
        c = p.config
        name = s.model_info.name if s.model_info else c.model_path
        placement = f"--n-cpu-moe {p.n_cpu_moe}" if p.n_cpu_moe else (f"{len(c.overrides)} -ot rules" if c.overrides else "")
        lines = [f"{name}: {plan_mode(p.mode)}" + (f", {placement}" if placement else ""),
                 f"predicted decode ~{tps(p.decode_tps)} tok/s · prompt ~{tps(p.prompt_tps)} tok/s {factors_words(p)}",
                 f"context {c.n_ctx}" + (f" (max {p.max_ctx})" if p.max_ctx else "")
                 + f" · KV {c.cache_type_k} · fa {c.flash_attn}"]
        if c.draft is not None:
            lines.append(f"draft: {c.draft.model_path} ({'GPU' if c.draft.n_gpu_layers else 'CPU'})")
        if s.model_path and needs_download(s.model_path):
            lines.append("[$text-warning]not downloaded yet (planned without the file); Chat (c) or Best (b) downloads it[/]")
        active = s.active()  # the resolver's answer for the settings
        if active is not None and active.config is not c:
            measured = measured_words(s.tuned, active.config) if active.source == "tuned" else ""
            lines.append(f"[dim]Chat and Export use the {active.source} config (context {active.config.n_ctx})"
                         f"{measured}; this is the plan[/dim]")
        self.query_one("#plan-summary", Static).update("\n".join(lines))
        self.query_one("#plan-explanation", Static).update("\n".join(f"• {line}" for line in p.explanation))

    def _show_error(self, text: str | None) -> None:
        box = self.query_one("#plan-error", Static)
        box.update(f"✗ {text}" if text else "")
        box.display = bool(text)

    # ---- knobs -----------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("plan-ctx", "plan-margin") and getattr(self, "_ready", False):
            self.replan()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "plan-draft":
            self.replan(draft=True)
        else:
            self.replan()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "plan-kv" and getattr(self, "_ready", False):
            self.replan()

    def settings_from_knobs(self, draft: bool = False) -> Settings:
        """The app's Settings with the knobs' values (the draft box only when submitted: draft); a
        ConfigError naming the knob for a value that cannot be used."""
        base: Settings = app_state(self.app).settings
        ctx_text = self.query_one("#plan-ctx", Input).value.strip()
        try:
            n_ctx = int(ctx_text) if ctx_text else None
        except ValueError:
            raise ConfigError(f"context must be a whole number of tokens, not {ctx_text!r}", field="n_ctx") from None
        if n_ctx is not None and n_ctx < MIN_CTX:
            raise ConfigError(f"context must be at least {MIN_CTX} tokens, not {n_ctx}; the plan keeps the last "
                              "valid one", field="n_ctx")
        kv = self.query_one("#plan-kv", Select).value
        margin_text = self.query_one("#plan-margin", Input).value.strip()
        margin = None
        if margin_text:
            try:
                margin = gib_bytes(float(margin_text))
            except ValueError:
                raise ConfigError(f"VRAM headroom must be a number of GiB, not {margin_text!r}",
                                  field="vram_margin_bytes") from None
        changes = {"n_ctx": n_ctx, "cache_type": None if kv in (AUTO, Select.BLANK) else str(kv),
                   "vram_margin_bytes": margin}
        if draft:
            changes["draft_path"] = self.query_one("#plan-draft", Input).value.strip() or None
        return base.replace(**changes)  # validated field by field

    def replan(self, draft: bool = False) -> None:
        try:
            settings = self.settings_from_knobs(draft)
        except ConfigError as exc:
            self._knob_error = str(exc)
            self._show_error(self._knob_error)
            return
        self._knob_error = None
        self._show_error(None)
        self.post_message(SettingsChanged(settings))
