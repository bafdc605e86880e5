"""moetui's own exported llama-server / llama-cli command line -> RunConfig (the inverse of
commandline.server_command), so an exported line can be checked, edited by hand and brought back.

It understands the flags export writes (and their long spellings); any other flag is an error, not
silently dropped.
"""

from __future__ import annotations

import shlex

from moetui.config import DraftConfig, RunConfig, TensorOverride
from moetui.config.llama_flags import SETTINGS, SWITCH_DEFAULTS
from moetui.errors import ConfigError
from moetui.export.commandline import NOTE_PREFIX
from moetui.sizing.overrides import ALL_PARTS, cpu_expert_overrides

# spellings of the structured settings (placement, draft, server options) the table does not hold
_OTHER_ALIASES = {
    "--model": "-m", "--gpu-layers": "-ngl", "--override-tensor": "-ot", "--n-cpu-moe": "-ncmoe", "--fit": "-fit",
    "--spec-draft-model": "-md", "--model-draft": "-md", "--spec-draft-ngl": "-ngld",
    "--gpu-layers-draft": "-ngld", "--n-gpu-layers-draft": "-ngld", "--spec-draft-override-tensor": "-otd",
    "--override-tensor-draft": "-otd", "--draft-max": "--spec-draft-n-max", "--draft-min": "--spec-draft-n-min",
}
_ALIASES = {**_OTHER_ALIASES, **{s.long: s.flag for s in SETTINGS if s.long and s.flag}}
_FLAG_FIELD = {(s.flag or s.long): s for s in SETTINGS}  # the spelling export writes -> its row
_VALUED = {f for f, s in _FLAG_FIELD.items() if s.kind != "switch"} | {
    "-m", "-ot", "-ncmoe", "-fit", "-md", "-ngld", "-otd", "--spec-draft-n-max", "--spec-draft-n-min",
    "--spec-type", "--spec-ngram-simple-size-n", "--spec-ngram-simple-size-m", "--host", "--port",
    "--chat-template", "-r", "--reverse-prompt"}  # the chat template: a property of the model file (moetui.model.chat_template)
_SWITCHES = {f for f, s in _FLAG_FIELD.items() if s.kind == "switch"} | {"--swa-full", "--no-mmap", "--mlock",
                                                                            "-v", "--verbose", "--no-jinja", "--jinja"}


def _ngl(value: str) -> int:
    if value in ("all", "auto"):
        return -1
    n = int(value)
    return -1 if n < 0 or n >= 999 else n


def _overrides(value: str) -> list[TensorOverride]:
    out = []
    for item in value.split(","):
        pattern, sep, device = item.rpartition("=")
        if not sep or not pattern:
            raise ConfigError(f"-ot {item!r}: expected PATTERN=BUFFER_TYPE")
        out.append(TensorOverride(pattern, device))
    return out


def parse_server_argv(argv: list[str], notes: list[str] | None = None) -> RunConfig:
    """argv as export writes it (argv[0] the program). Host/port and -v are accepted and ignored."""
    if not argv:
        raise ConfigError("empty command line")
    vals: dict[str, str] = {}
    switches: set[str] = set()
    i = 1
    while i < len(argv):
        arg = argv[i]
        flag = _ALIASES.get(arg, arg)
        if flag in _SWITCHES:
            switches.add(flag)
            i += 1
            continue
        if flag not in _VALUED:
            raise ConfigError(f"unknown flag {arg!r}: not a setting moetui exports")
        if i + 1 >= len(argv):
            raise ConfigError(f"{arg} needs a value")
        vals[flag] = argv[i + 1]
        i += 2
    if "-m" not in vals:
        raise ConfigError("the command line has no -m MODEL")
    try:
        kw: dict = {"model_path": vals["-m"]}
        for flag, setting in _FLAG_FIELD.items():  # every single-valued llama.cpp setting, read by the table
            if setting.kind == "switch":
                if flag in switches:
                    kw[setting.field] = not SWITCH_DEFAULTS[setting.field]
            elif flag in vals:
                kw[setting.field] = _ngl(vals[flag]) if setting.field == "n_gpu_layers" else setting.parse(vals[flag])
        overrides: list[TensorOverride] = []
        if "-ncmoe" in vals:
            overrides += cpu_expert_overrides({i: ALL_PARTS for i in range(int(vals["-ncmoe"]))})
        if "-ot" in vals:
            overrides += _overrides(vals["-ot"])
        kw["overrides"] = overrides
        if "-lm" not in vals and switches & {"--no-mmap", "--mlock"}:
            kw["load_mode"] = {frozenset({"--no-mmap"}): "none", frozenset({"--mlock"}): "mmap+mlock",
                               frozenset({"--no-mmap", "--mlock"}): "mlock"}[frozenset(switches & {"--no-mmap", "--mlock"})]
        spec = vals.get("--spec-type", "")
        if "-md" in vals:
            kw["draft"] = DraftConfig(
                kind="model", model_path=vals["-md"], n_gpu_layers=_ngl(vals.get("-ngld", "all")),
                overrides=_overrides(vals["-otd"]) if "-otd" in vals else [],
                draft_max=int(vals.get("--spec-draft-n-max", 16)), draft_min=int(vals.get("--spec-draft-n-min", 0)))
        elif "ngram-simple" in spec:
            kw["draft"] = DraftConfig(kind="ngram", draft_max=int(vals.get("--spec-ngram-simple-size-m", 16)))
        kw["notes"] = list(notes or [])
        return RunConfig(**kw)
    except ValueError as exc:
        raise ConfigError(f"bad value in the command line: {exc}") from None


def parse_server_text(text: str) -> RunConfig:
    """A whole exported block for a POSIX shell: comment lines (# note: ... become the config's notes)
    and the command line (backslash-newline continuations allowed)."""
    notes, command = [], []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            body = s[1:].strip()
            if body.startswith(NOTE_PREFIX):
                notes.append(body[len(NOTE_PREFIX):])
            continue
        command.append(line)
    try:
        argv = shlex.split("\n".join(command))
    except ValueError as exc:
        raise ConfigError(f"cannot split the command line: {exc}") from None
    return parse_server_argv(argv, notes)
