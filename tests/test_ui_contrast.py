"""Every text on every screen is readable: a contrast ratio of at least 4.5:1 (WCAG AA) against its own
background, in the dark and the light theme, read from the rendered snapshots (tests/__snapshots__, made
by tests/test_ui_snapshots.py). Letters and digits are checked; box drawing, bars and the scrollbar are
graphics, not text, and disabled controls are exempt, as in WCAG."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

SNAPSHOTS = sorted((Path(__file__).parent / "__snapshots__" / "test_ui_snapshots").glob("*.svg"))
AA = 4.5

_CLASS = re.compile(r"\.(terminal-r\d+) \{ fill: (#[0-9a-fA-F]{6})")
_RECT = re.compile(r'<rect fill="(#[0-9a-fA-F]{6})" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="[\d.]+" shape-rendering')
_TEXT = re.compile(r'<text class="(terminal-r\d+)" x="([\d.]+)" y="([\d.]+)" textLength="[\d.]+" clip-path="[^"]*">([^<]*)</text>')
CELL_W, ROW_H, RECT_Y0, TEXT_Y0 = 12.2, 24.4, 1.5, 20.0


def luminance(color: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def low_contrast_texts(svg: str) -> list[str]:
    """'row 3 "Context" #5f5f5f on #1e1e1e (2.1:1)' for every run of text under AA."""
    fills = dict(_CLASS.findall(svg))
    bg: dict[tuple[int, int], str] = {}
    for color, x, y, w in _RECT.findall(svg):
        row, col = round((float(y) - RECT_Y0) / ROW_H), round(float(x) / CELL_W)
        for c in range(col, col + round(float(w) / CELL_W)):
            bg[(row, c)] = color
    bad = []
    for cls, x, y, raw in _TEXT.findall(svg):
        text = html.unescape(raw).replace("\xa0", " ")
        fg = fills.get(cls)
        if fg is None or not any(ch.isalnum() for ch in text):
            continue
        row, col = round((float(y) - TEXT_Y0) / ROW_H), round(float(x) / CELL_W)
        worst = min((contrast(fg, bg[(row, col + i)]), bg[(row, col + i)])
                    for i, ch in enumerate(text) if ch.isalnum() and (row, col + i) in bg) if any(
            (row, col + i) in bg for i in range(len(text))) else None
        if worst is not None and worst[0] < AA:
            bad.append(f"row {row} {text.strip()!r} {fg} on {worst[1]} ({worst[0]:.1f}:1)")
    return bad


def test_the_checker_sees_low_contrast() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") < AA < contrast("#595959", "#ffffff")


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.stem for p in SNAPSHOTS])
def test_every_text_is_readable(snapshot: Path) -> None:
    bad = low_contrast_texts(snapshot.read_text())
    assert not bad, f"{len(bad)} texts under {AA}:1 in {snapshot.name}:\n" + "\n".join(bad[:40])
