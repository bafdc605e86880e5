"""Which flags a llama.cpp tool understands, and how it spells them.

Spellings changed across llama.cpp releases (load mode `-lm` vs older `--no-mmap`/`--mlock`/`-mmp`;
`-fa on|off|auto` vs an older bare `-fa`; `--spec-draft-n-max` vs `--draft-max`; `-ngl all` vs a big
number). The answer comes from the binary itself when there is one (`--version`, `--help`), otherwise
from a table of the llama.cpp that the installed llama-cpp-python vendors.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from moetui.errors import MoetuiError

TOOLS = ("server", "cli", "bench")
BINARY_NAMES = {"server": "llama-server", "cli": "llama-cli", "bench": "llama-bench"}

# The llama.cpp commit each llama-cpp-python release vendors (its CHANGELOG: "update llama.cpp to ...").
VENDORED_COMMITS = {"0.3.36": "0c1e57098"}

# Flags these tools of that llama.cpp accept (read from common/arg.cpp and tools/llama-bench/llama-bench.cpp,
# checked against the built binaries' --help by tests/test_export_llama_tools.py). Only the flags export uses.
_COMMON = {
    "-m", "-c", "-ngl", "-ot", "-cmoe", "-ncmoe", "-sm", "-ts", "-mg", "-fa", "-ctk", "-ctv", "-t", "-tb",
    "-b", "-ub", "-lm", "-s", "-fit", "--swa-full", "-md", "-ngld", "-otd", "--spec-draft-n-max",
    "--spec-draft-n-min", "--spec-type", "--spec-ngram-simple-size-n", "--spec-ngram-simple-size-m",
    "-v", "-n", "-nr", "--no-host", "--chat-template", "--no-jinja", "-r",
}
VENDORED_FLAGS = {
    "server": _COMMON | {"-np", "--host", "--port"},
    "cli": _COMMON | {"-st", "-p"},
    "bench": {"-m", "-p", "-n", "-ngl", "-ncmoe", "-ot", "-sm", "-ts", "-mg", "-fa", "-ctk", "-ctv", "-t", "-b",
              "-ub", "-lm", "-o", "-r", "--repack", "--no-host"},
}


class FlagsError(MoetuiError):
    """A llama.cpp binary that cannot be run or does not look like the expected tool."""


@dataclass
class ToolFlags:
    tool: str  # server | cli | bench
    binary: str  # what the command line starts with: a name on PATH or a path
    flags: set[str]
    target: str  # for the comment above the command: which llama.cpp this line is for
    ngl_all: bool = True  # `-ngl all` understood (else a large number means all)
    fa_takes_value: bool = True  # `-fa on|off|auto` (else bare `-fa` turns it on)
    fa_numeric: bool = False  # older llama-bench: `-fa 0|1`
    help_text: str = field(default="", repr=False)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def first(self, *spellings: str) -> str | None:
        """The first of `spellings` this tool knows."""
        return next((s for s in spellings if s in self.flags), None)


_FLAG_RE = re.compile(r"(?<![\w-])(--?[A-Za-z][\w+-]*)")


def parse_help(text: str) -> set[str]:
    """Every flag spelling that appears in a --help text (only the first column matters, but flags named
    inside descriptions are real flags too)."""
    return set(_FLAG_RE.findall(text))


def installed_llama_cpp_python() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def vendored_flags(tool: str) -> ToolFlags:
    """The llama.cpp that the installed llama-cpp-python vendors."""
    ver = installed_llama_cpp_python()
    commit = VENDORED_COMMITS.get(ver or "")
    if ver and commit:
        target = f"llama.cpp {commit} (vendored by llama-cpp-python {ver})"
    elif ver:
        target = (f"the llama.cpp vendored by llama-cpp-python {ver} (commit unknown to moetui; "
                  f"flags as of llama.cpp {VENDORED_COMMITS['0.3.36']})")
    else:
        target = f"llama.cpp {VENDORED_COMMITS['0.3.36']} (llama-cpp-python not installed)"
    return ToolFlags(tool=tool, binary=BINARY_NAMES[tool], flags=set(VENDORED_FLAGS[tool]), target=target)


def _run(binary: str, arg: str) -> str:
    try:
        p = subprocess.run([binary, arg], check=False, capture_output=True, text=True, errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FlagsError(f"cannot run {binary} {arg}: {exc}") from None
    return p.stdout + p.stderr


def flags_from_binary(tool: str, binary: str | Path) -> ToolFlags:
    """Ask the binary: `--version` names the build, `--help` lists the flags it has."""
    binary = str(binary)
    version_text = _run(binary, "--version")
    help_text = _run(binary, "--help")
    flags = parse_help(help_text)
    if "-m" not in flags and "--model" not in flags:
        raise FlagsError(f"{binary} --help lists no -m/--model: not a llama.cpp {BINARY_NAMES[tool]}")
    m = re.search(r"version:\s*(\S+)\s*\(([^)]*)\)", version_text)
    build = f"version {m.group(1)} ({m.group(2)})" if m else "of unknown version"
    if m and m.group(1) == "0" and m.group(2) == "unknown":
        build = "a source build without git info"
    # A short alias may be missing from --help's first column layout in some releases: normalise the
    # long spellings we rely on to their short forms.
    aliases = {"--model": "-m", "--ctx-size": "-c", "--n-gpu-layers": "-ngl", "--override-tensor": "-ot",
               "--flash-attn": "-fa", "--cache-type-k": "-ctk", "--cache-type-v": "-ctv", "--threads": "-t",
               "--threads-batch": "-tb", "--batch-size": "-b", "--ubatch-size": "-ub", "--load-mode": "-lm",
               "--n-cpu-moe": "-ncmoe", "--split-mode": "-sm", "--tensor-split": "-ts", "--main-gpu": "-mg",
               "--model-draft": "-md", "--n-gpu-layers-draft": "-ngld", "--gpu-layers-draft": "-ngld",
               "--override-tensor-draft": "-otd", "--parallel": "-np", "--seed": "-s", "--fit": "-fit",
               "--no-repack": "-nr"}
    for long, short in aliases.items():
        if long in flags:
            flags.add(short)
    ngl_line = next((ln for ln in help_text.splitlines() if "-ngl" in ln or "--n-gpu-layers" in ln), "")
    ngl_block = help_text[help_text.find(ngl_line):][:400] if ngl_line else ""
    fa_line = next((ln for ln in help_text.splitlines() if "--flash-attn" in ln or re.search(r"-fa\b", ln)), "")
    return ToolFlags(
        tool=tool, binary=binary, flags=flags, target=f"{BINARY_NAMES[tool]} {build} (its --help read at export)",
        ngl_all=("'all'" in ngl_block) or tool == "bench",
        fa_takes_value=bool(re.search(r"on\|off|<0\|1>|\[on", fa_line)) if fa_line else True,
        fa_numeric=bool(re.search(r"<0\|1>", fa_line)),
        help_text=help_text,
    )


def detect_flags(tool: str, binary: str | Path | None = None) -> ToolFlags:
    """Flags of `tool` ("server", "cli", "bench"): from `binary` if given (a llama-server path: its
    sibling llama-cli/llama-bench are used for those tools), else from the tool on PATH, else the table of
    the vendored llama.cpp."""
    if tool not in TOOLS:
        raise FlagsError(f"unknown tool {tool!r} (one of {', '.join(TOOLS)})")
    name = BINARY_NAMES[tool]
    if binary is not None:
        path = Path(binary)
        if path.is_dir():
            path = path / name
        elif path.name != name:
            path = path.with_name(name)  # --binary names the llama-server; the other tools sit beside it
        if not path.exists():
            raise FlagsError(f"{path}: no such llama.cpp binary")
        return flags_from_binary(tool, path)
    found = shutil.which(name)
    if found:
        f = flags_from_binary(tool, found)
        f.binary = name  # found on PATH: the line runs by name
        return f
    return vendored_flags(tool)
