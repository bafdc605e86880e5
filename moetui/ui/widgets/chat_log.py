"""The chat transcript: one `ChatMessage` per turn in a scrolling column. The assistant's message grows
while tokens stream in (`append_to_last`); the log follows the end unless the user scrolled up."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget

ROLE_LABELS = {"user": "you", "assistant": "model", "system": "system", "error": "error", "info": "·"}


STREAM_CHUNK_LINES = 6


class ChatMessage(Widget):
    """One turn. `text` is reactive: setting it repaints the message. The screen is re-laid out only when
    the message needs more lines, and while it streams (`streaming` True) its height grows
    STREAM_CHUNK_LINES at a time: a layout costs ~20 ms of CPU at 80x24 (every widget re-renders) against
    ~3 ms for a repaint, and a fast reply gains a line on nearly every batch. When streaming ends the
    height goes back to auto (exact)."""

    DEFAULT_CSS = """
    ChatMessage { height: auto; padding: 0 1; margin: 0 0 1 0; }
    """

    text: reactive[str] = reactive("")
    note: reactive[str] = reactive("")  # e.g. "stopped", shown after the text

    def __init__(self, role: str, text: str = "", **kwargs: object) -> None:
        super().__init__(classes=f"chat-msg chat-{role}", **kwargs)  # type: ignore[arg-type]
        self.role = role
        self.set_reactive(ChatMessage.text, text)
        self._n_lines = 0  # wrapped lines at the last layout
        self._streaming = False
        self._reserved = 0  # lines reserved while streaming

    def _wrapped_lines(self) -> int:
        width = self.content_size.width
        if width <= 0:
            return -1  # not laid out yet: let layout decide
        return len(self.render().wrap(self.app.console, width))

    def watch_text(self) -> None:
        self._relayout_if_grown()

    def watch_note(self) -> None:
        self._relayout_if_grown()

    @property
    def streaming(self) -> bool:
        return self._streaming

    @streaming.setter
    def streaming(self, value: bool) -> None:
        self._streaming = value
        self._reserved = 0
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
