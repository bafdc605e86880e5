"""Settings: what the user asked for — the model, the rig, the context, the VRAM margin and budget, the
workload, the KV type, the ubatch, which layers' experts stay in RAM, a draft model, RPC hosts. One
object, built once (from the command line by moetui.cli.settings_args, from the Plan, Tune and Best
screens through the app's state), validated once (field by field: ConfigError.field names the setting),
and handed unchanged to the plan (PlanOptions.for_settings), the tune (TuneOptions.settings), the resolver of the
config in force, the export and the run. Saved with each tuned profile: a profile answers a later ask
only where `reuse_problem` finds nothing between the two.

Memory amounts are bytes here and GiB on screen and on the command line (`GIB`), one unit everywhere.
Pure: no I/O; light (no gguf): the command line builds it before it loads anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from moetui.config import CACHE_TYPES
from moetui.config.units import GIB, gib_exact
from moetui.errors import ConfigError
from moetui.sizing.workload import DEFAULT_WORKLOAD, WORKLOADS, Workload, parse_workload

DEFAULT_VRAM_MARGIN = GIB // 2  # headroom for the desktop, fragmentation, other processes
EXPERT_RAM_ORDERS = ("first", "last")  # which layers' experts stay in RAM: llama.cpp's --n-cpu-moe, its fit
MIN_CTX = 256  # less holds no prompt worth planning for (and predicts nonsense per turn)
SETTINGS_VERSION = 1


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # a local GGUF, a shape preset or a hub REPO:QUANT
    rig: str = "auto"  # "auto" (this machine) or a reference rig preset
    n_ctx: int | None = None  # the smallest context wanted; None: the plan's (min(native, 32768))
    vram_margin_bytes: int | None = None  # kept free on each GPU; None: DEFAULT_VRAM_MARGIN
    vram_budget_bytes: int | None = None  # a cap on the GPU memory used, shared by the devices by free memory
    workload: Workload = field(default_factory=lambda: WORKLOADS[DEFAULT_WORKLOAD])
    cache_type: str | None = None  # force the KV cache type; None: the plan weighs f16 against q8_0
    n_ubatch: int | None = None  # None: the ubatch that pays for itself on the workload
    experts_in_ram: str = "last"  # which layers' experts stay in RAM: "last" (llama.cpp's fit) or "first"
    draft_path: str | None = None  # a draft GGUF for speculative decoding
    rpc_hosts: tuple[str, ...] = ()  # "host:port[=cap]" of ggml-rpc-servers whose devices join
    n_parallel: int = 1  # sequences served at once (`moetui serve --parallel N`): n_ctx each, N times the KV

    def __post_init__(self) -> None:
        self.validate()

    # --- one validation, field by field ---------------------------------------------------------------
    def validate(self) -> None:
        def bad(name: str, message: str) -> ConfigError:
            return ConfigError(message, field=name)

        if self.n_ctx is not None and (not _is_int(self.n_ctx) or self.n_ctx < MIN_CTX):
            raise bad("n_ctx", f"context must be a whole number of at least {MIN_CTX} tokens, not {self.n_ctx!r}")
        for name, words in (("vram_margin_bytes", "the VRAM margin"), ("vram_budget_bytes", "the VRAM budget")):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 0):
                raise bad(name, f"{words} must be >= 0 GiB, not {v!r}")
        if not isinstance(self.workload, Workload):
            raise bad("workload", f"the workload must be a Workload, not {self.workload!r}")
        if self.cache_type is not None and self.cache_type not in CACHE_TYPES:
            raise bad("cache_type", f"KV cache type must be one of {', '.join(CACHE_TYPES)}, not {self.cache_type!r}")
        if self.n_ubatch is not None and (not _is_int(self.n_ubatch) or self.n_ubatch <= 0):
            raise bad("n_ubatch", f"the ubatch must be a positive whole number, not {self.n_ubatch!r}")
        if self.experts_in_ram not in EXPERT_RAM_ORDERS:
            raise bad("experts_in_ram", f"experts in RAM must be one of {', '.join(EXPERT_RAM_ORDERS)}, "
                                        f"not {self.experts_in_ram!r}")
        if not _is_int(self.n_parallel) or self.n_parallel < 1:
            raise bad("n_parallel", f"parallel sequences must be a whole number of at least 1, not {self.n_parallel!r}")
        if not isinstance(self.rpc_hosts, tuple) or not all(isinstance(h, str) and h for h in self.rpc_hosts):
            raise bad("rpc_hosts", f"RPC hosts must be HOST:PORT strings, not {self.rpc_hosts!r}")

    def replace(self, **changes: Any) -> "Settings":
        """A copy with these fields changed, validated."""
        return dataclasses.replace(self, **changes)

    @property
    def margin(self) -> int:
        """The VRAM kept free on each GPU, in bytes (the user's, else the default)."""
        return DEFAULT_VRAM_MARGIN if self.vram_margin_bytes is None else self.vram_margin_bytes

    # --- profile reuse --------------------------------------------------------------------------------
    def reuse_problem(self, saved: "Settings | None", saved_ctx: int, min_ctx: int, *, gpu_matters: bool) -> str | None:
        """Why a profile tuned with `saved` settings (its winner running at saved_ctx) does not answer these
        settings, whose context is min_ctx (n_ctx, else the plan's); None when it does. A larger context or
        more VRAM headroom also satisfies a smaller ask."""
        if saved is None:
            return "the saved profile does not say which settings it was tuned for"
        if saved.n_parallel != self.n_parallel:  # N slots hold N times the KV: another placement
            return (f"the saved profile was tuned for {saved.n_parallel} parallel sequence(s), "
                    f"not {self.n_parallel}")
        if saved.workload != self.workload:
            return f"the saved profile was tuned for {saved.workload.describe()}, not {self.workload.describe()}"
        if saved_ctx < min_ctx:
            return f"the saved profile was tuned at context {saved_ctx}, below the {min_ctx} asked for"
        if gpu_matters:
            if saved.margin < self.margin:
                return (f"the saved profile kept {gib_exact(saved.margin)} of VRAM free, less than the "
                        f"{gib_exact(self.margin)} asked for")
            if self.vram_budget_bytes is not None and (saved.vram_budget_bytes is None
                                                       or saved.vram_budget_bytes > self.vram_budget_bytes):
                return f"the saved profile was not tuned within a VRAM budget of {gib_exact(self.vram_budget_bytes)}"
        for name, words in (("cache_type", "KV cache type"), ("n_ubatch", "ubatch"),
                            ("experts_in_ram", "experts in RAM"), ("draft_path", "draft model"),
                            ("rpc_hosts", "RPC hosts")):
            mine, theirs = getattr(self, name), getattr(saved, name)
            if name in ("cache_type", "n_ubatch") and mine is None:
                continue  # not forced: whatever the tune found stands
            if mine != theirs:
                return f"the saved profile was tuned with {words} {theirs or 'none'}, not {mine or 'none'}"
        return None

    # --- saved with profiles ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["workload"] = self.workload.to_dict()
        d["rpc_hosts"] = list(self.rpc_hosts)
        d["version"] = SETTINGS_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Settings":
        if not isinstance(d, dict):
            raise ConfigError(f"settings must be an object, not {type(d).__name__}")
        d = dict(d)
        d.pop("version", None)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
        if "workload" in d:
            w = d["workload"]
            d["workload"] = Workload.from_dict(w) if isinstance(w, dict) else parse_workload(w)
        d["rpc_hosts"] = tuple(d.get("rpc_hosts") or ())
        return cls(**d)

    def describe(self) -> str:
        """The settings that differ from the defaults, in a line ("context 4096, margin 1 GiB, ...")."""
        parts = [f"context {self.n_ctx}" if self.n_ctx else "the plan's context",
                 f"{gib_exact(self.margin)} VRAM margin", f"workload {self.workload.name}"]
        if self.vram_budget_bytes is not None:
            parts.append(f"VRAM budget {gib_exact(self.vram_budget_bytes)}")
        if self.cache_type:
            parts.append(f"KV {self.cache_type}")
        if self.n_ubatch:
            parts.append(f"ubatch {self.n_ubatch}")
        if self.experts_in_ram != "last":
            parts.append(f"experts in RAM: {self.experts_in_ram} layers")
        if self.draft_path:
            parts.append(f"draft {self.draft_path}")
        if self.n_parallel != 1:
            parts.append(f"{self.n_parallel} parallel sequences")
        if self.rpc_hosts:
            parts.append(f"RPC {','.join(self.rpc_hosts)}")
        return ", ".join(parts)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
