"""The typed messages the UI's thread workers post (Textual's post_message is thread-safe, and returns False
once the receiver is closing): the App's workers (detection, inspection, planning, the saved profile) post
to the App, the Models, Rig and Export screens' workers to their screen. One small dataclass per thing that
happened; the receiver's `on_*` handler updates the state or the widgets on the UI thread. What screens
post to change the shared state (ModelSelected, SettingsChanged, ...) lives in moetui.ui.state; Chat, Tune
and Best config have their own modules (chat_messages, tune_view, best_messages). Domain types are
annotations only, so importing this at the app's start stays cheap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from moetui.hardware import Rig, Sample, Sampler
    from moetui.tuner import TuneResult
    from moetui.ui.model_rows import ModelRow


# ---- the App's workers -> the App ---------------------------------------------------------------------
@dataclass
class RigDetected(Message, bubble=False):
    """Detection ended: `rig`, or `error` says why there is none."""

    rig: Rig | None = None
    error: BaseException | None = None


@dataclass
class ModelUnreadable(Message, bubble=False):
    """The model picked at `path` could not be inspected (a readable one is posted as ModelSelected)."""

    path: str
    error: BaseException


@dataclass
class PlanFailed(Message, bubble=False):
    """Planning the selection failed (DoesNotFit ...); a plan that worked is posted as PlanChanged."""

    error: BaseException


@dataclass
class SavedProfileRead(Message, bubble=False):
    """The profile store was asked about the selection `model_path`: a `result` tuned earlier, none, or the
    `error` that made it unreadable (a damaged profile is just not used)."""

    model_path: str | None
    result: TuneResult | None = None
    error: BaseException | None = None


# ---- the Models screen's scan -> the Models screen ----------------------------------------------------
@dataclass
class RowsListed(Message, bubble=False):
    """The rows scan number `scan` lists (verdicts to come)."""

    rows: list[ModelRow]
    scan: int


@dataclass
class RowJudged(Message, bubble=False):
    """One row's (MoE shape, verdict, tok/s) cells, with the status line's progress words."""

    row: ModelRow
    cells: tuple[str, str, str]
    progress: str = ""


@dataclass
class ScanEnded(Message, bubble=False):
    """The scan judged every row: what failed on the way, and why the hub is unreachable (None: it is)."""

    errors: list[str]
    offline: str | None
    scan: int  # the scan's number: an older one's end is dropped


# ---- the Rig screen's live gauges -> the Rig screen ----------------------------------------------------
@dataclass
class SamplerReady(Message, bubble=False):
    """The live sampler was built, or `error` says why there are no live gauges."""

    sampler: Sampler | None = None
    error: BaseException | None = None


@dataclass
class SampleTaken(Message, bubble=False):
    sample: Sample


# ---- the Export screen's renderer -> the Export screen -------------------------------------------------
@dataclass
class ExportRendered(Message, bubble=False):
    """The exported text for the `source` config, its warnings; `failed`: the first warning says why not."""

    text: str
    warnings: list[str]
    source: str
    failed: bool = False
