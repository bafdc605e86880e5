"""The Models screen's work off the UI thread: list the rows (the selection, local GGUFs, the catalog's
quants) and judge each one for a rig (MoE shape, fit verdict, predicted decode tok/s), the verdict kept in
VERDICTS per file identity, rig and planner inputs. The screen (ui/screens/models.py) runs these in its
thread workers and draws what they return."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from moetui.errors import DoesNotFit, MoetuiError, in_words
from moetui.hub.cache import cached_model_path
from moetui.hub.catalog import load_catalog
from moetui.hub.discovery import discover_local
from moetui.ui.model_rows import VERDICTS, ModelRow, VerdictCache, moe_shape, rig_key, same_file, shape_info, verdict
from moetui.ui.widgets.format import tps

if TYPE_CHECKING:
    from moetui.hardware import Rig
    from moetui.model.info import ModelInfo

Cells = tuple[str, str, str]  # (MoE shape, verdict, tok/s)


def list_rows(selected: str | None, selected_info: ModelInfo | None) -> tuple[list[ModelRow], list[str]]:
    """The rows to list, and what could not be listed (the local scan, the catalog), in words."""
    rows: list[ModelRow] = []
    if selected and Path(selected).expanduser().exists():
        quant = str(getattr(selected_info, "file_type", "") or "")
        rows.append(ModelRow(selected, Path(selected).name, quant, Path(selected).stat().st_size, "selected",
                             selected_info))
    errors: list[str] = []
    try:
        for m in discover_local():
            if str(m.path) != selected:
                rows.append(ModelRow(str(m.path), m.name, m.quant, m.size_bytes, m.source, missing=m.missing))
    except Exception as exc:
        errors.append(f"local scan: {in_words(exc)}")
    try:
        for cm in load_catalog():
            if cm.role != "target":
                continue
            for q in cm.quants:
                cached = cached_model_path(q.ref)
                local = str(cached) if cached is not None and cached.is_file() else None
                rows.append(ModelRow(q.ref, cm.name, q.quant, q.size_bytes, q.repo.split("/")[0], approx=q.approx,
                                     shape=cm.shape, local_path=local, catalog=True))
    except MoetuiError as exc:
        errors.append(f"catalog: {in_words(exc)}")
    # a downloaded catalog quant is listed once, as its catalog row (the HF cache scan finds it too)
    downloaded = {same_file(r.local_path) for r in rows if r.local_path}
    return [r for r in rows if r.catalog or same_file(r.key) not in downloaded], errors


def evaluate_row(row: ModelRow, rig: Rig | None, options: Any, rig_id: str | None = None) -> Cells:
    """The row's cells planned with `options` (the row's plan options), from VERDICTS when judged before."""
    if row.missing or rig is None:
        return judge_row(row, rig, options)
    key = VerdictCache.key(row, rig_id or rig_key(rig), options)
    hit = VERDICTS.get(key)
    if hit is not None:
        info, cells, detail = hit
        row.info = row.info or info
        row.detail = detail
        row.take_header_quant()
        return cells
    cells = judge_row(row, rig, options)
    VERDICTS.put(key, (row.info, cells, row.detail))
    return cells


def judge_row(row: ModelRow, rig: Rig | None, options: Any) -> Cells:
    """Read (or build from its shape preset) the row's model and plan it: the cells, and `row.detail`."""
    from moetui.sizing.plan import plan  # gguf: not at the app's start

    if row.missing:
        row.detail = f"{row.key} is no longer there (moved or deleted); Add it again from its new place"
        return "?", "missing", ""
    try:
        if row.info is None:
            shape = row.shape
            if row.file is not None:
                from moetui.model.inspect import inspect_file

                row.info = inspect_file(row.file)
            elif shape:
                row.info = shape_info(shape, row.size_bytes)
            else:
                return "?", "no shape preset: download to inspect", ""
        row.take_header_quant()
    except Exception as exc:
        row.detail = f"unreadable: {in_words(exc)}"
        return "?", f"unreadable: {in_words(exc)[:60]}", ""
    if rig is None:
        return moe_shape(row.info), "no rig yet", ""
    try:
        p = plan(row.info, rig, options)  # as Home and Plan plan it: one figure
    except DoesNotFit as exc:
        row.detail = str(exc)
        return moe_shape(row.info), "does not fit", ""
    except Exception as exc:
        row.detail = in_words(exc)
        return moe_shape(row.info), f"no plan: {row.detail[:50]}", ""
    n = sum(1 for ly in p.layers if ly.experts_cpu)
    row.detail = (f"{p.explanation[0]}" + (f" ({n} expert layers in RAM)" if p.mode == "experts_split" else "")
                  + f"; predicted {tps(p.decode_tps)} tok/s decode")
    return moe_shape(row.info), verdict(p), tps(p.decode_tps)
