"""Waiting helpers for the Pilot tests (imported as `from ui_pilot import settle, wait_for`)."""

from __future__ import annotations

import time
from typing import Any, Callable


async def settle(app: Any, pilot: Any, rounds: int = 3) -> None:
    """Let workers finish and their call_from_thread/messages land (a worker may start another)."""
    for _ in range(rounds):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def wait_for(pilot: Any, cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `cond` while the app runs; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
