"""A progress bar with the caller's ETA (the tuner and the downloader know their remaining time better
than a rate guess), elapsed time and a one-line message."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Label, ProgressBar

from moetui.ui.widgets.flow_format import fmt_duration


class ProgressEta(Widget):
    DEFAULT_CSS = """
    ProgressEta { height: 2; }
    ProgressEta ProgressBar { width: 1fr; }
    ProgressEta .progress-eta-line { width: 1fr; height: 1; color: $text-muted; }
    """

    fraction: reactive[float] = reactive(0.0)
    eta_s: reactive[float | None] = reactive(None)
    elapsed_s: reactive[float | None] = reactive(None)
    message: reactive[str] = reactive("")

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=1000, show_eta=False)
        yield Label("", classes="progress-eta-line")

    def update_progress(self, fraction: float | None = None, *, eta_s: float | None = None,
                        elapsed_s: float | None = None, message: str | None = None) -> None:
        if fraction is not None:
            self.fraction = max(0.0, min(1.0, fraction))
        self.eta_s = eta_s
        if elapsed_s is not None:
            self.elapsed_s = elapsed_s
        if message is not None:
            self.message = message

    def reset(self, message: str = "") -> None:
        self.fraction, self.eta_s, self.elapsed_s, self.message = 0.0, None, None, message

    def watch_fraction(self, value: float) -> None:
        if self.is_mounted:
            self.query_one(ProgressBar).update(progress=round(value * 1000))

    def _line(self) -> str:
        bits = []
        if self.elapsed_s is not None:
            bits.append(f"elapsed {fmt_duration(self.elapsed_s)}")
        if self.eta_s is not None:
            bits.append(f"ETA {fmt_duration(self.eta_s)}")
        if self.message:
            bits.append(self.message)
        return " · ".join(bits)

    def watch_eta_s(self) -> None:
        self._refresh_line()

    def watch_elapsed_s(self) -> None:
        self._refresh_line()

    def watch_message(self) -> None:
        self._refresh_line()

    def _refresh_line(self) -> None:
        if self.is_mounted:
            self.query_one(".progress-eta-line", Label).update(self._line())

    def on_mount(self) -> None:
        self.query_one(ProgressBar).update(progress=round(self.fraction * 1000))
        self._refresh_line()
