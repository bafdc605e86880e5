"""The Models screen's rows and verdicts, apart from the screen: a row of the table (a local file or a catalog
quant), the fit verdict in words, the MoE shape cell, catalog quants as virtual models, and the cache that
keeps verdicts per file identity, rig and planner inputs (the scan worker fills it from its thread)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moetui.ui.widgets.format import gib

if TYPE_CHECKING:
    from moetui.hardware import Rig
    from moetui.model.info import ModelInfo
    from moetui.sizing.plan import Plan

VERDICT_WIDTH = 14
NOT_DOWNLOADED = "↓ "  # in the "from" cell of a catalog quant that is not on this machine yet


def same_file(path: str | None) -> str:
    """A path as one key for the same file reached through a symlink (the HF cache's snapshots)."""
    try:
        return str(Path(path or "").resolve())
    except OSError:
        return path or ""


def fit_name(name: str, width: int) -> str:
    """A long name shortened in the middle, so both its family and its variant show:
    'Qwen3-30B-A3B-Instruct-2507' in 18 -> 'Qwen3-30B…uct-2507'."""
    if len(name) <= width:
        return name
    tail = max(3, (width - 1) // 2 - 1)
    return name[:width - 1 - tail] + "…" + name[-tail:]
_shape_cache: dict[tuple[str, str], ModelInfo] = {}
_shape_lock = threading.Lock()


def rig_key(rig: Rig) -> str:
    """What of the rig a verdict depends on: everything detection or a preset states (memory, bandwidths,
    build) but the wording (warnings, notes) and how the RAM figure was checked."""
    d = rig.to_dict()
    for k in ("warnings", "notes", "bandwidth_probe"):
        d.pop(k, None)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


class VerdictCache:
    """Fit verdicts per (file identity, rig, planner inputs): a Rescan or an Add judges only the rows it has
    not judged before (21 rows took 15-25 s). The file identity is path + size + mtime for a local file (an
    edited or replaced file is judged again), ref + size + shape for a catalog row. Thread-safe: the scan
    worker fills it. `computed` counts the verdicts really worked out (tests read it)."""

    def __init__(self) -> None:
        self._d: dict[tuple[object, ...], tuple[ModelInfo | None, tuple[str, str, str], str]] = {}
        self._lock = threading.Lock()
        self.computed = 0

    @staticmethod
    def key(row: ModelRow, rig_id: str, options: object = None) -> tuple[object, ...] | None:
        """options: the PlanOptions the row is planned with (None: the defaults)."""
        from moetui.sizing.plan import PlanOptions

        path = row.file  # a catalog quant once downloaded is judged from its file, not its shape
        if path is not None:
            try:
                st = Path(path).expanduser().stat()
            except OSError:
                return None  # gone: judged (and reported) afresh
            ident: tuple[object, ...] = (str(Path(path).expanduser().resolve()), st.st_size, st.st_mtime_ns)
        else:
            ident = (row.key, row.size_bytes, row.shape, "not downloaded")
        return (ident, rig_id, repr(options if options is not None else PlanOptions(model_path=row.key)))

    def get(self, key: tuple[object, ...] | None) -> tuple[ModelInfo | None, tuple[str, str, str], str] | None:
        if key is None:
            return None
        with self._lock:
            return self._d.get(key)

    def put(self, key: tuple[object, ...] | None, value: tuple[ModelInfo | None, tuple[str, str, str], str]) -> None:
        with self._lock:
            self.computed += 1
            if key is not None:
                self._d[key] = value


VERDICTS = VerdictCache()


@dataclass
class ModelRow:
    key: str  # DataTable row key: what ModelSelected carries as the path (file path or REPO:QUANT)
    name: str
    quant: str
    size_bytes: int
    source: str
    info: ModelInfo | None = None
    approx: bool = False
    shape: str | None = None  # catalog rows: the shape preset that stands in for the file
    detail: str = ""  # the verdict in full words, shown when the row is highlighted
    missing: bool = False  # an added or remembered file that is no longer there
    local_path: str | None = None  # catalog rows: the file in the HF cache, once downloaded
    catalog: bool = False  # a catalog quant (key REPO:QUANT) rather than a file found on this machine
    quant_from_header: bool = False  # the quant cell is the GGUF header's file type, not a name

    @property
    def file(self) -> str | None:
        """The local file behind the row (None: a catalog quant not downloaded)."""
        return self.local_path if self.catalog else self.key

    def source_cell(self) -> str:
        return self.source if self.file is not None else NOT_DOWNLOADED + self.source

    def describe_quant(self) -> str:
        """Where the quant cell comes from, for the status line."""
        if self.quant_from_header:
            return ""
        if self.file is None:
            return "quant as published (the header is read once it is downloaded)"
        return "quant from the file name (its header could not be read)"

    def take_header_quant(self) -> None:
        """The quant cell from the GGUF header's file type, where there is a file and its header says one."""
        if self.file is not None and self.info is not None and self.info.file_type and self.info.file_type != "?":
            self.quant, self.quant_from_header = self.info.file_type, True  # the header's word, not the name's


def verdict(p: Plan) -> str:
    """The plan's placement in words: all in VRAM / hybrid with N expert layers in RAM / ..."""
    if p.mode == "all_gpu":
        return "all in VRAM"
    # at most VERDICT_WIDTH characters: at 80 columns a longer verdict is cut ("hybrid: 25 in RA")
    if p.mode == "experts_split":
        n = sum(1 for ly in p.layers if ly.experts_cpu)
        return f"RAM: {n} layers"  # the experts of N layers in RAM, the rest in VRAM (the status line spells it out)
    if p.mode == "partial_layers":
        return "partial (CPU)"  # some whole layers on the GPU, the CPU sets the pace
    return "CPU only"


def moe_shape(info: ModelInfo | None) -> str:
    if info is None:
        return "…"
    if not info.n_expert:
        return f"dense×{info.n_layers}"
    return f"{info.n_expert_used}/{info.n_expert}×{info.n_layers}"  # active/total experts × layers


def shape_info(shape: str, quant_bytes: int) -> ModelInfo:
    """A catalog quant as a virtual model: the shape preset's exact header scaled to the quant's size."""
    from moetui.sizing.quant_choice import scaled_model
    from moetui.model.virtual import model_info_for_shape, shape_mix

    mix = shape_mix(shape)
    with _shape_lock:
        if (shape, mix) not in _shape_cache:
            _shape_cache[(shape, mix)] = model_info_for_shape(shape, mix)
    return scaled_model(_shape_cache[(shape, mix)], quant_bytes)


def source_text(row: ModelRow, selected: bool) -> str:
    """The "from" cell: "selected" on the selected model's row only; a file listed because it was selected
    once is a "file" after another model is picked."""
    if selected:
        return "selected"
    return "file" if row.source == "selected" else row.source_cell()


def app_plan_options(state: Any) -> Any:
    """The app's settings as plan options with what a tune measured on this rig, as the App's own plans use
    them (no draft: a verdict is about the row's model)."""
    from moetui.resolver import plan_options_for  # the sizing core loads gguf: not at the app's start

    return plan_options_for(state.rig, state.settings.replace(draft_path=None)) if state.rig is not None else None


def row_plan_options(base: Any, row: ModelRow) -> Any:
    """The PlanOptions a row is planned with: the app's (the user's context, margin, workload and the
    efficiency a tune measured on this rig), so the selected model's row shows the Plan screen's figure;
    a context beyond the row's own native one is left to the planner's default for it."""
    from moetui.sizing.plan import PlanOptions

    o = dataclasses.replace(base or PlanOptions(), model_path=row.key, draft=None)
    native = getattr(row.info, "context_length", None)
    if o.n_ctx is not None and native and o.n_ctx > native:
        o.n_ctx = None
    return o


def row_status(row: ModelRow) -> str:
    """The status line for a highlighted row: what it is, then what the plan says of it."""
    if row.file is None:
        size = ("~" if row.approx else "") + gib(row.size_bytes)
        return (f"{row.name} {row.quant}: not downloaded ({size} from {row.key.split(':')[0]}; quant and size as "
                f"published, the plan from its shape) — d downloads it\n{row.detail}")
    quant = row.describe_quant()
    return f"{row.name} {row.quant}: {row.detail}" + (f"\n{quant}" if quant else "")
