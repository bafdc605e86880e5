"""Quote an argv as one command line for a POSIX shell (sh, bash, zsh) or PowerShell, so that paths with
spaces, quotes, `$`, backticks and non-ASCII reach the program byte for byte.

POSIX: single quotes keep everything literal; a single quote itself is closed, escaped, reopened ('\\'').
PowerShell: single-quoted strings are literal too; the only special character inside is the single quote,
doubled to escape it — and PowerShell also takes the typographic quotes ‘ ’ ‚ ‛ as single quotes, so those
are doubled as well. A quoted program name needs the call operator `&`.
"""

from __future__ import annotations

from moetui.errors import ConfigError

import re
import shlex

SHELLS = ("posix", "powershell")

# Characters that need no quoting in an argument. PowerShell treats `,` (array), `;` `|` `&` `(` `)`
# `{` `}` `@` `$` `` ` `` `#` `<` `>` and quotes specially, POSIX shells most of these plus `*?[]~!`.
_POSIX_SAFE = re.compile(r"^[A-Za-z0-9_./:=+%@^-]+$")
_PWSH_SAFE = re.compile(r"^[A-Za-z0-9_./:=+%^\\-]+$")
_PWSH_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"


def quote_posix(arg: str) -> str:
    if arg and _POSIX_SAFE.match(arg):
        return arg
    return shlex.quote(arg)


def quote_powershell(arg: str) -> str:
    # "--%" (stop parsing) and a bare "--" mean something to PowerShell itself: quote them too.
    if arg and _PWSH_SAFE.match(arg) and arg not in ("--", "--%") and not arg.startswith("-") or _is_plain_flag(arg):
        return arg
    return "'" + "".join(c + c if c in _PWSH_SINGLE_QUOTES else c for c in arg) + "'"


def _is_plain_flag(arg: str) -> bool:
    # -m, --ctx-size, -ot: PowerShell passes these to a native program as they are.
    return bool(re.match(r"^--?[A-Za-z][A-Za-z0-9-]*$", arg))


def join(argv: list[str], shell: str = "posix") -> str:
    if shell == "posix":
        return " ".join(quote_posix(a) for a in argv)
    if shell == "powershell":
        parts = [quote_powershell(a) for a in argv]
        if parts and parts[0] != argv[0]:
            parts[0] = "& " + parts[0]  # a quoted string alone is an expression, not a command
        return " ".join(parts)
    raise ConfigError(f"shell must be one of {SHELLS}", field="shell")


def comment(text: str, shell: str = "posix") -> str:
    """A comment line (both shells use #); newlines in `text` become separate comment lines."""
    return "\n".join("# " + line for line in str(text).splitlines() or [""])
