"""The chat transcript: one `ChatMessage` per turn in a scrolling column. The assistant's message grows
while tokens stream in (`append_to_last`); the log follows the end unless the user scrolled up."""

from __future__ import annotations

import re

from rich._wrap import divide_line
from rich.text import Text
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

ROLE_LABELS = {"user": "you", "assistant": "model", "system": "system", "error": "error", "info": "·"}


STREAM_CHUNK_LINES = 6

# Characters a terminal acts on instead of drawing: a model's byte tokens (random weights emit them all the
# time, a real model now and then) carried ESC, CR, BS and TAB into the transcript, and the terminal's cursor
# moved with them: the log's right border broke and lines shifted. Drawn as the Unicode control pictures
# (ESC -> "␛", one cell each), tabs as spaces, CR LF and lone CR as a line break.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
TAB = "    "


def _picture(m: re.Match[str]) -> str:
    c = m.group()
    if c == "\r":
        return "\n"
    if c in "\u2028\u2029":
        return "\n"
    o = ord(c)
    if o < 0x20:
        return chr(0x2400 + o)
    return "\u2421" if o == 0x7F else "\ufffd"  # DEL, C1 controls


def printable(text: str) -> str:
    """`text` as the terminal should draw it: no character moves its cursor but a line break."""
    if "\t" in text:
        text = text.replace("\t", TAB)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return _CONTROL.sub(_picture, text)


class ChatMessage(Widget):
    """One turn. `text` is reactive: setting it repaints the message. The screen is re-laid out only when
    the message needs more lines, and while it streams (`streaming` True) its height grows
    STREAM_CHUNK_LINES at a time: a layout costs ~20 ms of CPU at 80x24 (every widget re-renders) against
    ~3 ms for a repaint, and a fast reply gains a line on nearly every batch. When streaming ends the
    height goes back to auto (exact).

    While it streams, the message draws its own lines (`render_line`) and wraps only the text after its
    last settled line: greedy word wrap never moves a break before the last two lines, so every line above
    those is kept as a Strip and never wrapped again. Re-wrapping the whole reply on every batch made each
    update cost in proportion to the reply's length (a 2,000-token reply: most of the UI's CPU)."""

    DEFAULT_CSS = """
    ChatMessage { height: auto; padding: 0 1; margin: 0 0 1 0; }
    """

    text: reactive[str] = reactive("")
    note: reactive[str] = reactive("")  # e.g. "stopped", shown after the text

    def __init__(self, role: str, text: str = "", **kwargs: object) -> None:
        super().__init__(classes=f"chat-msg chat-{role}", **kwargs)  # type: ignore[arg-type]
        self.role = role
        self.set_reactive(ChatMessage.text, printable(text))
        self._n_lines = 0  # wrapped lines at the last layout
        self._streaming = False
        self._reserved = 0  # lines reserved while streaming
        self._settled: list[Strip] = []  # streaming: wrapped lines that can no longer change
        self._settled_at = 0  # streaming: offset in the rendered text where the unsettled lines start
        self._settled_width = 0
        self._lines: list[Strip] | None = None  # streaming: all lines for the current text

    def _wrapped_lines(self) -> int:
        width = self.content_size.width
        if width <= 0:
            return -1  # not laid out yet: let layout decide
        if self._streaming:
            return len(self._stream_lines(width))
        return len(self.render().wrap(self.app.console, width))

    def _stream_lines(self, width: int) -> list[Strip]:
        if width != self._settled_width:
            self._settled, self._settled_at, self._settled_width = [], 0, width
        if self._lines is not None:
            return self._lines
        tail = self.render()[self._settled_at:]
        starts: list[int] = []  # offset of each line in `tail`
        pieces: list[Text] = []
        pos = 0
        for para in tail.split("\n", allow_blank=True):
            offsets = divide_line(para.plain, width, fold=True)
            for start, piece in zip([0, *offsets], para.divide(offsets)):
                starts.append(pos + start)
                pieces.append(piece)
            pos += len(para.plain) + 1
        console, base = self.app.console, self.visual_style.rich_style
        strips = [self._strip(piece, width, console, base) for piece in pieces]
        keep = max(0, len(strips) - 2)
        if keep:
            self._settled.extend(strips[:keep])
            self._settled_at += starts[keep]
        self._lines = self._settled + strips[keep:]
        return self._lines

    @staticmethod
    def _strip(piece: Text, width: int, console: object, base: object) -> Strip:
        piece.rstrip_end(width)
        piece.end = ""
        return Strip(list(piece.render(console)), piece.cell_len).adjust_cell_length(width).apply_style(base)  # type: ignore[arg-type]

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        if not self._streaming or width <= 0:
            return super().render_line(y)
        lines = self._stream_lines(width)
        return lines[y] if y < len(lines) else Strip.blank(width, self.visual_style.rich_style)

    def validate_text(self, text: str) -> str:
        return printable(text)  # a C-speed scan of the text: microseconds for a long reply

    def watch_text(self) -> None:
        self._lines = None
        self._relayout_if_grown()

    def watch_note(self) -> None:
        self._lines = None
        self._relayout_if_grown()

    @property
    def streaming(self) -> bool:
        return self._streaming

    @streaming.setter
    def streaming(self, value: bool) -> None:
        self._streaming = value
        self._reserved = 0
        self._settled, self._settled_at, self._lines = [], 0, None
        if not value:
            self.styles.height = "auto"
            self._n_lines = -2  # force one exact layout
            self._relayout_if_grown()

    def _relayout_if_grown(self) -> None:
        if not self.is_mounted:
            return
        n = self._wrapped_lines()
        if self._streaming and n > 0:
            reserved = -(-n // STREAM_CHUNK_LINES) * STREAM_CHUNK_LINES
            if reserved != self._reserved:
                self._reserved = reserved
                self.styles.height = reserved  # a layout, once per chunk of lines
            else:
                self.refresh()
            self._n_lines = n
        elif n != self._n_lines:
            self._n_lines = n
            self.refresh(layout=True)
        else:
            self.refresh()

    def on_resize(self) -> None:
        self._n_lines = self._wrapped_lines()

    def render(self) -> Text:
        label = ROLE_LABELS.get(self.role, self.role)
        out = Text.assemble((f"{label}: ", "bold"), self.text)
        if self.note:
            out.append(f"  [{self.note}]", style="italic dim")
        return out


class ChatLog(VerticalScroll):
    """Messages up to the screen are not needed: the screen owns the conversation and writes here."""

    DEFAULT_CSS = """
    ChatLog { height: 1fr; }
    """

    def add_message(self, role: str, text: str = "") -> ChatMessage:
        follow = self._at_end()
        msg = ChatMessage(role, text)
        self.mount(msg)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)
        return msg

    def append_to_last(self, text: str) -> None:
        msgs = self.messages
        if not msgs:
            return
        follow = self._at_end()
        msgs[-1].text += text
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)

    @property
    def messages(self) -> list[ChatMessage]:
        return list(self.query(ChatMessage))

    def clear_messages(self) -> None:
        self.remove_children()

    def transcript(self) -> str:
        return "\n".join(f"{m.role}: {m.text}" for m in self.messages)

    def _at_end(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - 1
