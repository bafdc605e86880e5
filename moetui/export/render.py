"""One config as any of the things export writes — a llama-server / llama-cli / llama-bench command line,
a llama-cpp-python script, a config file — for `moetui export` and the Export screen alike."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from moetui.config import RunConfig
from moetui.export.commandline import export_command
from moetui.export.python_snippet import python_snippet

EXPORT_TOOLS = ("server", "cli", "bench", "python", "config")


@dataclass
class Rendered:
    tool: str
    text: str  # what a person reads or saves (no trailing newline)
    data: dict[str, Any]  # what `--json` prints for it
    warnings: list[str] = field(default_factory=list)


def render(cfg: RunConfig, tool: str, shell: str = "posix", binary: str | None = None) -> Rendered:
    """`cfg` for `tool` (EXPORT_TOOLS). Blocking: finding a llama.cpp binary may run its --help."""
    if tool == "python":
        text = python_snippet(cfg)
        return Rendered(tool, text, {"tool": "python", "script": text})
    if tool == "config":
        return Rendered(tool, json.dumps(cfg.to_dict(), indent=2, sort_keys=True), {"tool": "config", "config": cfg.to_dict()})
    cmd = export_command(cfg, tool, binary=binary)
    return Rendered(tool, cmd.render(shell), cmd.to_dict(shell), list(cmd.warnings))
