"""The messages Best config's flow thread posts to its screen, and the FlowReporter it posts them with
(Textual's post_message is thread-safe, and returns False once the screen is closing: the flow then
cancels itself). What changes the shared state (RigChanged, ModelSelected, PlanChanged, TuneCompleted)
goes to the App as everywhere else; these only redraw the screen. BestConfigScreen.on_* handles them."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum

from textual.message import Message
from textual.screen import Screen

from moetui.tuner import TuneResult
from moetui.ui.screens.flow_common import release_model_workers


@dataclass
class StepChanged(Message, bubble=False):
    """A checklist step (`key`: rig, model, download, plan, tune, chat) is running, done or skipped."""

    key: str
    status: str
    detail: str | None = None


@dataclass
class TargetChanged(Message, bubble=False):
    """The line that says which model the flow works on."""

    text: str


@dataclass
class ProgressChanged(Message, bubble=False):
    """The progress bar: `fraction` done (None: unknown), with an ETA or the time it took, and a word."""

    fraction: float | None
    eta_s: float | None
    elapsed_s: float | None
    message: str


class FlowOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class FlowEnded(Message, bubble=False):
    """The flow ended at `step`: done with `result` (Chat opens on it), cancelled, or failed with `error`."""

    outcome: FlowOutcome
    step: str
    result: TuneResult | None = None
    error: BaseException | None = None


@dataclass
class FlowReporter:
    """How the flow thread speaks to the UI: messages that redraw the screen, messages that change the App's
    state. A message that cannot be delivered (the screen or the app is closing) cancels the flow."""

    screen: Screen
    cancel: threading.Event

    def show(self, message: Message) -> None:
        if not self.screen.post_message(message):
            self.cancel.set()

    def tell_app(self, message: Message) -> None:
        if not self.screen.app.post_message(message):
            self.cancel.set()

    def step(self, key: str, status: str, detail: str | None = None) -> None:
        self.show(StepChanged(key, status, detail))

    def target(self, text: str) -> None:
        self.show(TargetChanged(text))

    def progress(self, fraction: float | None, eta_s: float | None, elapsed_s: float | None, message: str) -> None:
        self.show(ProgressChanged(fraction, eta_s, elapsed_s, message))

    def release_model_workers(self) -> None:
        """Wait until every screen let go of its model process: the tuner must measure with no other model
        resident, so this one waits for the UI thread (call_from_thread) instead of posting."""
        try:
            self.screen.app.call_from_thread(release_model_workers, self.screen.app)
        except RuntimeError:  # the app has stopped
            self.cancel.set()
