"""Export: the chosen config (tuned, else planned) as llama-server / llama-cli / llama-bench command lines,
a llama-cpp-python snippet or a moetui config file; copy to the clipboard (OSC 52) or save to a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Select, Static, TextArea
from textual.worker import get_current_worker

from moetui.errors import MoetuiError, in_words
from moetui.export.render import render
from moetui.paths import atomic_write_text, data_dir
from moetui.ui.widgets.select_title import show_select_titles
from moetui.ui.messages import ExportRendered
from moetui.ui.state import app_state

if TYPE_CHECKING:
    from moetui.config import RunConfig

TOOLS = (("llama-server", "server"), ("llama-cli", "cli"), ("llama-bench", "bench"),
         ("Python (llama-cpp-python)", "python"), ("moetui config (JSON)", "config"))
SHELLS = (("POSIX shell", "posix"), ("PowerShell", "powershell"))
EXTENSIONS = {"python": ".py", "config": ".json"}


def render_export(cfg: RunConfig, tool: str, shell: str = "posix") -> tuple[str, list[str]]:
    """(text, warnings) for one tool. Blocking: finding a llama.cpp binary may run its --help."""
    r = render(cfg, tool, shell)
    return r.text + "\n", r.warnings


def clipboard_words(environ: dict[str, str] | None = None) -> str:
    """What `y` can promise: the text goes to the terminal as OSC 52, which only the terminal can put on the
    clipboard (tmux and screen pass it on only when set to); nothing comes back to say it did."""
    env = os.environ if environ is None else environ
    via = ""
    if env.get("TMUX"):
        via = " Inside tmux it needs `set -g set-clipboard on`."
    elif env.get("STY"):
        via = " GNU screen does not pass it on."
    return ("Sent to the terminal's clipboard (OSC 52); terminals that do not support it ignore it." + via
            + " If nothing was copied, s saves it to the file shown below.")


def default_save_path(cfg: RunConfig, tool: str, shell: str) -> Path:
    stem = Path(cfg.model_path.split(":")[0]).name.removesuffix(".gguf") or "model"
    ext = EXTENSIONS.get(tool, ".ps1" if shell == "powershell" else ".sh")
    return data_dir() / "exports" / f"{stem}-{tool}{ext}"


class ExportScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "copy", "Copy", tooltip="copy the text to the clipboard (OSC 52)"),
        Binding("s", "save", "Save", tooltip="save the text to the file in the 'save to' box"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="export-top"):
            tool = Select([(label, v) for label, v in TOOLS], value="server", allow_blank=False, id="export-tool")
            tool.border_title = "what"
            yield tool
            shell = Select([(label, v) for label, v in SHELLS], value="posix", allow_blank=False, id="export-shell")
            shell.border_title = "shell"
            yield shell
            yield Button("Copy", id="export-copy")
            yield Button("Save", id="export-save", variant="primary")
        yield Static("", id="export-notes")
        # unwrapped: a line wrapped mid-flag ("-c" / "32768") copies broken from a terminal selection; long lines
        # scroll sideways instead
        yield TextArea("", id="export-text", read_only=True, soft_wrap=False, show_line_numbers=False)
        with Horizontal(id="export-bottom"):
            path = Input(id="export-path", placeholder="file to save to")
            path.border_title = "save to"
            yield path
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.text = ""
        show_select_titles(self)  # the dropdowns' labels, where Textual draws their border
        self._shown: tuple[int, str, str] | None = None
        self.refresh_from_state()

    def on_screen_resume(self) -> None:
        self.refresh_from_state()

    def refresh_from_state(self) -> None:
        self.render_choice()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id in ("export-tool", "export-shell"):
            self.render_choice()

    def choice(self) -> tuple[str, str]:
        return str(self.query_one("#export-tool", Select).value), str(self.query_one("#export-shell", Select).value)

    def render_choice(self) -> None:
        s = app_state(self.app)
        active = s.active()
        cfg = active.config if active else None
        tool, shell = self.choice()
        notes = self.query_one("#export-notes", Static)
        if cfg is None:
            self.text = ""
            self.query_one(TextArea).load_text("")
            notes.update("No config yet: select a model (m) and let it plan (p), or tune it (t).")
            return
        key = (repr(cfg), tool, shell)  # a config re-resolved equal renders the same
        if key == self._shown:
            return
        self._shown = key
        source = str(active.source)
        notes.update(f"the {source} config for {Path(cfg.model_path).name} — rendering…")
        self.query_one("#export-path", Input).value = str(default_save_path(cfg, tool, shell))
        self._render_worker(cfg, tool, shell, source)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _render_worker(self, cfg: RunConfig, tool: str, shell: str, source: str) -> None:
        try:
            text, warnings = render_export(cfg, tool, shell)
        except Exception as exc:
            msg = in_words(exc)
            self.post_message(ExportRendered("", [f"cannot export: {msg}"], source, failed=True))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(ExportRendered(text, warnings, source))

    def on_export_rendered(self, msg: ExportRendered) -> None:
        self._show(msg.text, msg.warnings, msg.source, msg.failed)

    def _show(self, text: str, warnings: list[str], source: str, failed: bool) -> None:
        self.text = text
        area = self.query_one(TextArea)
        area.load_text(text)
        # the comments come first (a valid script): bring the command itself into view
        lines = text.splitlines()
        first_cmd = next((i for i, line in enumerate(lines) if line and not line.startswith("#")), 0)
        area.move_cursor((first_cmd, 0), center=True)
        cfg = app_state(self.app).active_config()
        head = f"the {source} config for {Path(cfg.model_path).name if cfg else '?'}"
        self.query_one("#export-notes", Static).update(
            "\n".join([head, *(f"[$text-warning]! {w}[/]" for w in warnings)]))
        if failed:
            self.notify(warnings[0], title="Export", severity="error")

    # ---- copy / save -----------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-copy":
            self.copy()
        elif event.button.id == "export-save":
            self.save()

    def action_copy(self) -> None:
        self.copy()

    def action_save(self) -> None:
        self.save()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "export-path":
            self.save()

    def copy(self) -> None:
        if not self.text:
            self.notify("nothing to copy yet", severity="warning")
            return
        self.app.copy_to_clipboard(self.text)  # OSC 52: the terminal puts it on the system clipboard
        self.notify(clipboard_words(), title="Copy", timeout=8)

    def save(self) -> Path | None:
        if not self.text:
            self.notify("nothing to save yet", severity="warning")
            return None
        raw = self.query_one("#export-path", Input).value.strip()
        if not raw:
            self.notify("give a file name to save to", severity="error")
            return None
        path = Path(raw).expanduser()
        try:
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a folder")
            text = self.text
            if path.suffix == ".sh" and not text.startswith("#!"):
                text = "#!/bin/sh\n" + text  # a saved command line runs as ./file.sh (the export is POSIX sh)
            atomic_write_text(path, text)
            if path.suffix in (".sh", ".py"):
                path.chmod(0o755)  # a saved command line is meant to be run
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror or exc}", title="Save", severity="error")
            return None
        self.notify(f"saved {path}", timeout=4)
        return path
