"""A Select's label where it shows: Textual draws a Select's border on its inner SelectCurrent, so a
border_title set on the Select itself is never drawn (the Plan screen's KV type and Export's "what" and
"shell" dropdowns showed no label)."""

from __future__ import annotations

from textual.dom import DOMNode
from textual.widgets import Select


def show_select_titles(root: DOMNode) -> None:
    """Copy each Select's border_title under `root` onto the part that draws the border (call on mount)."""
    for select in root.query(Select):
        if select.border_title:
            for current in select.query("SelectCurrent"):
                current.border_title = select.border_title
