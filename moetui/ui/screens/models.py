"""Models: local GGUFs (HF cache, LM Studio, Ollama, added folders and files, the current selection) and the catalog's
quants; for each its size, MoE shape and a fit verdict for the current rig with predicted decode tok/s.

Listing and verdicts (moetui.ui.model_scan) run in a thread worker and fill the table row by row through
typed messages (moetui.ui.messages): local files need a header read and catalog entries a virtual model
built from the shape preset (~0.5 s each, cached per process).
Verdicts are kept per file identity, rig and planner inputs (VerdictCache): a Rescan or an Add judges only
the rows not judged before."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from moetui.errors import MoetuiError
from moetui.hub.cache import cached_model_path
from moetui.hub.discovery import add_file, add_folder
from moetui.ui.keys import type_into_focused_box
from moetui.ui.model_rows import (NOT_DOWNLOADED, VERDICT_WIDTH, ModelRow, app_plan_options, fit_name, moe_shape,
                                  rig_key, row_plan_options, row_status, source_text)
from moetui.ui.model_scan import Cells, evaluate_row, list_rows
from moetui.ui.messages import RowJudged, RowsListed, ScanEnded
from moetui.ui.state import DownloadRequested, ModelSelected, app_state
from moetui.ui.widgets.format import gib
from moetui.hub.connection import unreachable_reason

if TYPE_CHECKING:
    from moetui.hardware import Rig
    from moetui.model.info import ModelInfo

# (key, label, width): at 80 columns the name, where it is from (repo owner, HF cache, LM Studio ...),
# the verdict and tok/s stay visible; the MoE shape scrolls into view
COLUMNS = (("model", "model", 17), ("source", "from", 11), ("quant", "quant", 10), ("size", "size", 9),
           ("fit", "fit here", VERDICT_WIDTH), ("tps", "tok/s", 5), ("moe", "MoE", 8))  # "UD-Q4_K_XL", "~17.3 GiB" whole


PATH_STARTS = frozenset("/~.")  # how a typed path begins


class ModelsScreen(Screen):
    AUTO_FOCUS = "#models-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add path", tooltip="add the GGUF file or folder typed in the path box"),
        Binding("s", "rescan", "Rescan", tooltip="list the local models again and judge them for this rig"),
        Binding("d", "download", "Download", tooltip="download the highlighted catalog quant; Chat shows the "
                "progress, then loads it"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="models-top"):
            # select_on_focus off: a path typed into the unfocused box must not replace its first character
            yield Input(placeholder="add a GGUF file or a folder of them (path)", id="models-path",
                        select_on_focus=False)
            yield Button("Add", id="models-add")
            yield Button("Rescan", id="models-rescan")
        yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="models-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.rows: dict[str, ModelRow] = {}
        self._rig_seen: object = None
        self._options_seen = ""
        self._plan_base: Any = None  # the app's PlanOptions with this rig's measured efficiency (scan sets it)
        self._marked: str | None = None
        self._scanned = False  # the listing of the last scan is in the table
        self._scan_seq = 0  # the newest scan's number: what an older scan's worker still posts is dropped
        self._pending_add: str | None = None  # a file Added, remembered once it is selected
        self._done: tuple[list[str], str | None] | None = None  # the finished scan's errors and offline reason
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        self.refresh_from_state()

    def on_screen_resume(self) -> None:
        if self._scanned and self._downloaded_since_scan():  # (d here, or Chat's offer) judged from the file now
            self.scan()
        self.refresh_from_state()

    def on_resize(self) -> None:
        """Wider terminals show more of the model name (the other columns are as wide as they need)."""
        table = self.query_one(DataTable)
        fixed = sum(w + 2 for key, _, w in COLUMNS if key != "model")  # + cell padding
        width = max(COLUMNS[0][2], self.size.width - fixed - 4)  # scrollbar and margins
        col = table.columns.get("model")  # type: ignore[call-overload]
        if col is not None and col.width != width:
            col.width = width
            for key, row in self.rows.items():
                if key in table.rows:
                    table.update_cell(key, "model", fit_name(row.name, width))
            table._require_update_dimensions = True  # Textual re-measures columns on the next refresh
            table.refresh(layout=True)

    def refresh_from_state(self) -> None:
        s = app_state(self.app)
        if self._pending_add is not None and s.model_path == self._pending_add and s.model_info is not None:
            self._remember_added(self._pending_add)
        elif self._pending_add is not None and s.model_error:
            self._pending_add = None  # the App could not read it: not worth listing next time
        options = app_plan_options(app_state(self.app))
        if s.rig is not self._rig_seen or (repr(options) != self._options_seen and self.is_current):
            # verdicts depend on the rig and the planner's inputs (the user's knobs, a tune's efficiency); for
            # the latter a hidden Models waits until it is shown (each keystroke in Plan's context box changes them)
            self._rig_seen, self._options_seen = s.rig, repr(options)
            self.scan()
        elif (self._scanned and s.model_path and s.model_path not in self.rows
              and all(r.local_path != s.model_path for r in self.rows.values())
              and Path(s.model_path).expanduser().is_file()):
            # a file picked elsewhere (Add, command line): one more row, judged on its own
            row = ModelRow(s.model_path, Path(s.model_path).name, "", Path(s.model_path).stat().st_size,
                           "selected", s.model_info)
            self._add_rows([row])
            self._eval_worker(row, s.rig)
        self._mark_selected()

    def _downloaded_since_scan(self) -> bool:
        """A catalog quant listed as not downloaded is in the HF cache now (a lookup per such row, no reads)."""
        for row in self.rows.values():
            if row.catalog and row.file is None:
                cached = cached_model_path(row.key)
                if cached is not None and cached.is_file():
                    return True
        return False

    def _remember_added(self, path: str) -> None:
        """An Added file that loaded is listed after a restart too, even once another model is selected."""
        self._pending_add = None
        try:
            add_file(path)
        except (MoetuiError, OSError) as exc:  # a read-only data dir: selected now, not remembered
            self.notify(f"not remembered for next time: {exc}", title="Add model", severity="warning")

    def _mark_selected(self) -> None:
        """Put the cursor on the selected model once per selection (never fight the user's cursor)."""
        path = app_state(self.app).model_path
        table = self.query_one(DataTable)
        path = next((k for k, r in self.rows.items() if r.local_path and r.local_path == path), path)
        if path in self.rows and path != self._marked:
            if self._marked in self.rows and self._marked in table.rows:  # "selected" follows the selection
                table.update_cell(self._marked, "source", source_text(self.rows[self._marked], False))
            self._marked = path
            if path in table.rows:
                table.update_cell(path, "source", source_text(self.rows[path], True))
            try:
                with table.prevent(DataTable.RowHighlighted):  # not the user's highlight: see _add_rows
                    table.move_cursor(row=table.get_row_index(path))
            except Exception:  # the row is still being added
                pass

    # ---- listing + verdicts (worker) ------------------------------------------------------------
    def scan(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.rows = {}
        self._marked = None
        self._scanned = False
        self._done = None
        self._scan_seq += 1
        self.query_one("#models-status", Static).update("scanning local folders and the catalog…")
        s = app_state(self.app)
        self._plan_base = app_plan_options(app_state(self.app))
        self._scan_worker(s.rig, s.model_path, s.model_info, self._scan_seq)

    @work(thread=True, exclusive=True, group="models-scan", exit_on_error=False)
    def _scan_worker(self, rig: Rig | None, selected: str | None, selected_info: ModelInfo | None, seq: int) -> None:
        worker = get_current_worker()
        rows, errors = list_rows(selected, selected_info)
        if worker.is_cancelled:  # a newer scan (rig changed) owns the table now
            return
        self.post_message(RowsListed(rows, scan=seq))
        rig_id = rig_key(rig) if rig is not None else None
        for i, row in enumerate(rows):
            if worker.is_cancelled:
                return
            cells = self._evaluate(row, rig, rig_id)
            if not self.post_message(RowJudged(row, cells, f"fit verdicts {i + 1}/{len(rows)}")):
                return  # the screen is closing
        offline = unreachable_reason()
        if not worker.is_cancelled:
            self.post_message(ScanEnded(errors, offline, seq))

    def on_rows_listed(self, msg: RowsListed) -> None:
        if msg.scan == self._scan_seq:  # (a replaced scan's rows would come back into the cleared table)
            self._add_rows(msg.rows, True)

    def on_row_judged(self, msg: RowJudged) -> None:
        self._update_row(msg.row, msg.cells, msg.progress)

    def on_scan_ended(self, msg: ScanEnded) -> None:
        if msg.scan != self._scan_seq:  # a replaced scan's end: the newest one's rows are still being judged
            return
        self._done = (msg.errors, msg.offline)
        # after the table has drawn the rows just listed: its first highlight (a row's detail) comes first
        self.call_after_refresh(self._status_done)

    def _status_done(self) -> None:
        """The scan's summary, counting the rows in the table now (one added since counts too)."""
        if self._done is None:
            return
        errors, offline = self._done
        missing = sum(1 for r in self.rows.values() if r.file is None)
        self._status(f"{len(self.rows)} models" + (f" ({NOT_DOWNLOADED}{missing} not downloaded)" if missing else "")
                     + (f"; {'; '.join(errors)}" if errors else "") + " — Enter selects"
                     + ("; d downloads the highlighted one" if missing else "")
                     + (f"\nhub unreachable ({offline}): catalog rows are sized from their shapes and plan "
                        "offline; local GGUFs, the demo model and what-if rigs (r) run" if offline else ""))

    def _evaluate(self, row: ModelRow, rig: Rig | None, rig_id: str | None = None) -> Cells:
        """(MoE shape, verdict, tok/s) for one row (worker thread), planned with the app's settings."""
        return evaluate_row(row, rig, row_plan_options(self._plan_base, row), rig_id)

    @work(thread=True, group="models-eval", exit_on_error=False)
    def _eval_worker(self, row: ModelRow, rig: Rig | None) -> None:
        self.post_message(RowJudged(row, self._evaluate(row, rig)))

    def _add_rows(self, rows: list[ModelRow], scanned: bool = False) -> None:
        table = self.query_one(DataTable)
        self._scanned = self._scanned or scanned
        # the table highlights its first row by itself: not the user's highlight, so the status line keeps
        # the scan's words (the worker has judged rows already by the time these land, and the highlight
        # would put a row's detail over the scan's summary)
        with table.prevent(DataTable.RowHighlighted):
            self._add_table_rows(table, rows)
        self._mark_selected()

    def _add_table_rows(self, table: DataTable, rows: list[ModelRow]) -> None:
        for r in rows:
            known = r.key in self.rows
            self.rows[r.key] = r  # the newest scan's object is the one its worker fills in
            if known:
                continue
            size = "-" if r.missing else ("~" if r.approx else "") + gib(r.size_bytes)
            col = table.columns.get("model")  # type: ignore[call-overload]
            width = col.width if col is not None else COLUMNS[0][2]
            table.add_row(fit_name(r.name, width), source_text(r, r.key == self._marked), r.quant or "-", size, "…", "", moe_shape(r.info),
                          key=r.key)

    def _update_row(self, row: ModelRow, cells: Cells, status: str) -> None:
        table = self.query_one(DataTable)
        if self.rows.get(row.key) is not row:  # from a scan that was replaced since
            return
        for col, value in zip(("moe", "fit", "tps", "quant"), (*cells, row.quant or "-")):
            table.update_cell(row.key, col, value)
        if status:
            self._status(status)
        elif self._done is not None:
            self._status_done()  # a row judged after the scan: the count follows the table

    def _status(self, text: str) -> None:
        self.query_one("#models-status", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self.rows.get(event.row_key.value or "")
        if row is not None and row.detail:
            self._status(row_status(row))

    # ---- choosing and adding ---------------------------------------------------------------------
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        row = self.rows.get(key or "")
        if row is None:
            return
        if row.missing:
            self.notify(f"{row.key}: no longer there (moved or deleted)", title="Model missing", severity="warning")
            return
        # a downloaded catalog quant is selected as its file, so Chat, Tune and Export run that file
        self.post_message(ModelSelected(row.file or row.key, row.info))
        note = "" if row.file is not None else f" (not downloaded: {gib(row.size_bytes)}; d downloads it)"
        self.notify(f"selected {row.name} {row.quant}{note}".strip(), timeout=4 if note else 3)

    def action_download(self) -> None:
        """Download the highlighted catalog quant: selected, with Chat showing the progress and loading it."""
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        row = self.rows.get(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or "")
        if row is None:
            return
        if row.file is not None:
            self.notify(f"{row.name} {row.quant} is on this machine already ({row.file}): Enter selects it",
                        title="Downloaded already", timeout=4)
            return
        self.post_message(ModelSelected(row.key, row.info))
        self.post_message(DownloadRequested(row.key))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "models-path":
            self._add(event.value)

    def on_key(self, event: Any) -> None:
        """A path typed while the box is not focused starts with "/", "~" or ".": send it to the box
        instead of letting its letters fire screen keys (a, s, t ...)."""
        box = self.query_one("#models-path", Input)
        if event.character in PATH_STARTS and self.focused is not box:
            self.set_focus(box)  # now, not on the next tick: the path's next keys are on their way already
        type_into_focused_box(self, event)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "models-add":
            self.action_add()
        elif event.button.id == "models-rescan":
            self.action_rescan()

    def action_add(self) -> None:
        """Add what the path box holds; an empty box gets the focus, so the key means "type a path now"."""
        box = self.query_one("#models-path", Input)
        if box.value.strip():
            self._add(box.value)
        else:
            box.focus()

    def action_rescan(self) -> None:
        self.scan()

    def _add(self, text: str) -> None:
        """A file is selected right away (the App inspects it and reports a bad one); a folder is scanned
        from now on."""
        text = text.strip()
        if not text:
            return
        path = Path(text).expanduser()
        if path.is_dir():
            try:
                add_folder(path)
            except MoetuiError as exc:
                self.notify(str(exc), title="Add folder", severity="error")
                return
            self.notify(f"scanning {path} from now on")
            self.scan()
        elif path.is_file():
            self._pending_add = str(path)  # remembered once the App could read it (refresh_from_state)
            self.post_message(ModelSelected(str(path), None))
        else:
            self.notify(f"{path}: no such file or folder", title="Add model", severity="error")
            return
        self.query_one("#models-path", Input).value = ""
        self.query_one("#models-table", DataTable).focus()  # done with the box: letter keys work again

