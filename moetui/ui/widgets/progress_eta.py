"""A progress bar with the caller's ETA (the tuner and the downloader know their remaining time better
than a rate guess), elapsed time and a one-line message.

While a run is on (start_clock .. stop_clock) the elapsed time, the ETA and the bar move every second from
the widget's own clock, not from the caller's events: a probe can take a minute, and a line that stands
still for that long reads as a hung app. The ETA counts down from the caller's last estimate."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Label, ProgressBar

from moetui.ui.widgets.flow_format import fmt_duration

TICK_S = 1.0  # the line's seconds move once a second


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

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.budget_s: float | None = None  # the bar's length when the caller gives no ETA
        self._started: float | None = None  # monotonic start of the run on show; None: no clock running
        self._estimate: tuple[float, float, float] | None = None  # (ETA, when given, bar then)

    def start_clock(self, budget_s: float | None = None) -> None:
        """A run starts now: elapsed counts from here, every second."""
        self._started, self._estimate, self.budget_s = time.monotonic(), None, budget_s
        self.elapsed_s = 0.0
        if self.is_mounted:
            self._ticker.resume()

    def stop_clock(self) -> None:
        """The run ended: the elapsed time stays at its end, the ETA goes."""
        if self._started is None:
            return
        self.elapsed_s = time.monotonic() - self._started
        self._started, self._estimate, self.eta_s = None, None, None
        if self.is_mounted:
            self._ticker.pause()

    @property
    def clock_running(self) -> bool:
        return self._started is not None

    def _tick(self) -> None:
        if self._started is None:
            return
        now = time.monotonic()
        self.elapsed_s = now - self._started
        fraction = self.fraction
        if self._estimate is not None:
            eta, given_at, fraction_then = self._estimate
            self.eta_s = max(0.0, eta - (now - given_at))
            if eta > 0:
                fraction = fraction_then + (1 - fraction_then) * min(1.0, (now - given_at) / eta)
        elif self.budget_s:
            fraction = self.elapsed_s / self.budget_s
        self.fraction = max(self.fraction, min(0.99, fraction))  # 100% only when the caller says it is done

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=1000, show_eta=False)
        yield Label("", classes="progress-eta-line")

    def update_progress(self, fraction: float | None = None, *, eta_s: float | None = None,
                        elapsed_s: float | None = None, message: str | None = None) -> None:
        if fraction is not None:
            self.fraction = max(0.0, min(1.0, fraction))
        if self._started is not None:  # the clock owns elapsed; the ETA counts down from the last estimate given
            if eta_s is not None:
                self._estimate, self.eta_s = (eta_s, time.monotonic(), self.fraction), eta_s
            self.elapsed_s = time.monotonic() - self._started
        else:
            self.eta_s = eta_s
            if elapsed_s is not None:
                self.elapsed_s = elapsed_s
        if message is not None:
            self.message = message

    def reset(self, message: str = "") -> None:
        self.stop_clock()
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
        self._ticker = self.set_interval(TICK_S, self._tick, pause=self._started is None)
        self.query_one(ProgressBar).update(progress=round(self.fraction * 1000))
        self._refresh_line()
