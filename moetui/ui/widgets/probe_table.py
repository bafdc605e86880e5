"""The Tune screen's live probe table: one row per probe, updated in place as it runs and finishes.
Selecting a row posts `ProbeTable.ProbePicked` (the screen turns it into a ConfigChosen)."""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.widgets import DataTable

from moetui.ui.widgets.flow_format import fmt_rate
from moetui.errors import ErrorKind
from moetui.ui.widgets.format import gib
from moetui.ui.probe_words import probe_name

STATUS_MARK = {"pending": "·", "running": "…", "ok": "✓", "failed": "✗", "skipped": "–"}
COLUMNS = (("#", "idx"), ("probe", "label"), ("", "status"), ("tg t/s", "tg"), ("pp t/s", "pp"),
           ("score", "score"), ("VRAM", "vram"), ("load s", "load"))


class ProbeTable(DataTable):
    DEFAULT_CSS = """
    ProbeTable { height: 1fr; }
    """

    class ProbePicked(Message):
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.probes: dict[int, Any] = {}  # probe index -> the latest Probe object
        self.best_index: int | None = None

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def clear_probes(self) -> None:
        self.clear()
        self.probes.clear()
        self.best_index = None

    def _cells(self, probe: Any) -> dict[str, str]:
        bench = probe.bench
        mark = STATUS_MARK.get(probe.status, probe.status)
        if probe.index == self.best_index:
            mark = "★"
        name = probe_name(probe)
        label = name if probe.status != "failed" or not probe.error else f"{name} ({ErrorKind.parse(probe.error_kind).words if probe.error_kind else 'failed'})"
        return {
            "idx": str(probe.index), "label": label, "status": mark,
            "tg": _spread(bench.tg_median, bench.tg_stdev, 1) if bench else "-",
            "pp": _spread(bench.pp_median, bench.pp_stdev, 0) if bench else "-",
            "score": fmt_rate(probe.score), "vram": gib(probe.vram_bytes) if probe.vram_bytes else "-",
            "load": "-" if probe.load_s is None else ("reused" if not probe.reloaded else f"{probe.load_s:.1f}"),
        }

    def upsert(self, probe: Any) -> None:
        """Add or update the row of `probe` (rows are keyed by probe index)."""
        key = str(probe.index)
        self.probes[probe.index] = probe
        cells = self._cells(probe)
        if key in self.rows:
            for col, value in cells.items():
                self.update_cell(key, col, value, update_width=True)
        else:
            self.add_row(*(cells[k] for _, k in COLUMNS), key=key)

    def set_best(self, index: int | None) -> None:
        old, self.best_index = self.best_index, index
        for i in (old, index):
            if i is not None and i in self.probes and str(i) in self.rows:
                self.update_cell(str(i), "status", self._cells(self.probes[i])["status"])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        probe = self.probes.get(int(event.row_key.value)) if event.row_key.value is not None else None
        if probe is not None and probe.status == "ok":
            self.post_message(self.ProbePicked(probe))


def _spread(median: float | None, stdev: float | None, digits: int) -> str:
    """'41.2±1.3': the median and the spread of the repetitions, so two probes can be told apart or not."""
    if median is None:
        return "-"
    return fmt_rate(median, digits) + (f"±{stdev:.{digits}f}" if stdev else "")
