"""Python's cyclic garbage collector, held off while a reply streams.

A full collection walks every tracked object of the process; with Textual, Rich, the GGUF reader and a
transcript that is a few hundred thousand objects, and on the 2-core test machine one took 95-280 ms in the
middle of a 2,000-token reply: the screen's longest freeze (tuning/chat_stream_speed.py; with the collector
held the longest gap between updates fell from 195-290 ms to 63-68 ms). Reference counting still frees what
a reply allocates; the few cycles it leaves wait for the collector, which runs again when the reply ends.
"""

from __future__ import annotations

import gc


class CollectorHold:
    """Holds the collector off between `hold()` and `release()`; never re-enables one it did not disable
    (a caller that turned it off for its own reasons keeps it off)."""

    def __init__(self) -> None:
        self._holding = False

    @property
    def holding(self) -> bool:
        return self._holding

    def hold(self) -> None:
        if not self._holding and gc.isenabled():
            gc.disable()
            self._holding = True

    def release(self) -> None:
        if self._holding:
            self._holding = False
            gc.enable()
