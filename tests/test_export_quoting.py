"""Quoting for POSIX shells (checked by really running the line through bash and sh) and PowerShell
(checked against PowerShell's single-quote rules; run through pwsh too when it is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moetui.export.quoting import join, quote_posix, quote_powershell

NASTY = [
    "plain",
    "with space",
    "it's",
    'say "hi"',
    "$HOME",
    "${PATH}",
    "`touch PWNED`",
    "$(touch PWNED)",
    "ünïcødé 模型 🚀",
    "tab\there",
    "new\nline",
    "back\\slash\\",
    "*.gguf",
    "~",
    "!event",
    "a,b;c|d&e>f<g",
    "",
    "-1",
    "--%",
    "‘curly’ ‚quotes‛",
    "#hash",
    "@splat",
    "=CPU",
    "blk\\.(0|1)\\.ffn_(up|down|gate|gate_up)_exps=CPU",
]
ECHO = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_posix_line_survives_a_real_shell(shell: str, tmp_path: Path) -> None:
    line = join([*ECHO, *NASTY], "posix")
    out = subprocess.run([shell, "-c", line], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert json.loads(out.stdout) == NASTY
    assert not (tmp_path / "PWNED").exists()  # no command substitution ran


def test_posix_program_path_with_spaces_runs(tmp_path: Path) -> None:
    prog = tmp_path / "my tools $x" / "echo 'it'"
    prog.parent.mkdir()
    prog.write_text(f"#!{sys.executable}\nimport sys, json\nprint(json.dumps(sys.argv[1:]))\n")
    prog.chmod(0o755)
    out = subprocess.run(["bash", "-c", join([str(prog), "a b", "ü"])], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["a b", "ü"]


def test_posix_leaves_plain_words_alone() -> None:
    assert quote_posix("-ngl") == "-ngl"
    assert quote_posix("/models/q.gguf") == "/models/q.gguf"
    assert quote_posix("a b") == "'a b'"


def _pwsh_unquote(token: str) -> str:
    """PowerShell's rule for a single-quoted string: everything literal, any single quote (' ‘ ’ ‚ ‛)
    doubled stands for one."""
    singles = "'\u2018\u2019\u201a\u201b"
    assert token[0] in singles and token[-1] in singles, token
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c in singles:
            assert i + 1 < len(body) and body[i + 1] in singles, f"lone quote in {token!r}"
            out.append(c)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


PWSH_SPECIAL = set(" \t\n'\"`$@#,;|&(){}<>\u2018\u2019\u201a\u201b")


@pytest.mark.parametrize("arg", NASTY)
def test_powershell_quoting_follows_single_quote_rules(arg: str) -> None:
    q = quote_powershell(arg)
    if q == arg:  # left bare: must hold nothing PowerShell would interpret
        assert arg and not (set(arg) & PWSH_SPECIAL), arg
        assert arg not in ("--%", "--")
    else:
        assert _pwsh_unquote(q) == arg


def test_powershell_doubles_typographic_quotes() -> None:
    assert quote_powershell("a\u2019b") == "'a\u2019\u2019b'"
    assert quote_powershell("it's") == "'it''s'"


def test_powershell_quoted_program_gets_call_operator() -> None:
    assert join(["C:\\Program Files\\llama\\llama-server.exe", "-m", "x y.gguf"], "powershell") == \
        "& 'C:\\Program Files\\llama\\llama-server.exe' -m 'x y.gguf'"
    assert join(["llama-server", "-c", "4096"], "powershell") == "llama-server -c 4096"


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="pwsh not installed (not in this distro's apt)")
def test_powershell_line_survives_real_pwsh(tmp_path: Path) -> None:
    line = join([*ECHO, *[a for a in NASTY if a]], "powershell")
    out = subprocess.run(["pwsh", "-NoProfile", "-Command", line], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert json.loads(out.stdout) == [a for a in NASTY if a]
