"""Shared output helpers for subcommands: JSON for scripts, aligned tables for people."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from typing import Any, Iterable, Sequence


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__fspath__"):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN or infinity: an unknown figure is null
    return obj


def print_json(obj: Any) -> None:
    json.dump(to_jsonable(obj), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    rows = [[str(c) for c in r] for r in rows]
    if header:
        rows.insert(0, [str(h) for h in header])
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)))
        if header and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls but tab and newline


def printable(text: str, keep_newlines: bool = False) -> str:
    """`text` safe for a terminal: control characters (ESC sequences, bells, carriage returns, C1 CSI)
    become U+FFFD, so a model file or a model's output cannot drive the terminal. Tab and newline stay
    only with keep_newlines."""
    text = _CONTROL.sub("\ufffd", text)
    return text if keep_newlines else text.replace("\n", "\ufffd").replace("\t", " ")


# bytes in the command line's tables: the one formatter module (GiB)
from moetui.config.units import gib_fixed as gib, human_bytes  # noqa: E402,F401
