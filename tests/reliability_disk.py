"""A small full disk for the reliability tests: a real tmpfs of a few hundred KB where this process may
mount one (root in a container that allows it), else None and the tests fall back to RLIMIT_FSIZE in a
child process (writes past the limit fail with EFBIG, as Python ignores SIGXFSZ)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def small_tmpfs(where: Path, size_kb: int) -> Iterator[Path | None]:
    where.mkdir(parents=True, exist_ok=True)
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                                               capture_output=True).returncode == 0
    try:
        yield where if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave_bytes: int) -> None:
    """Fill the file system of `folder` until `leave_bytes` or fewer are free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave_bytes))
            fh.flush()
        except OSError:
            pass


def run_with_file_size_limit(code: str, limit_bytes: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run Python `code` in a child whose files cannot grow past `limit_bytes` (RLIMIT_FSIZE)."""
    pre = ("import resource, signal\n"
           "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
           f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes}))\n")
    return subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
