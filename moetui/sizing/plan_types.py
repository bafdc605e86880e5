"""The plan's types: options in, the Plan out, and the rig facts every planner shares (budgets, threads).
Apart from moetui.sizing.plan so that the planners built on it (moetui.sizing.remote) need not import it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from moetui.config import RunConfig
from moetui.config.llama_flags import flag
from moetui.hardware.rig import Rig
from moetui.model.info import ModelInfo
from moetui.sizing.memory import GIB, MemoryBreakdown
from moetui.sizing.settings import DEFAULT_VRAM_MARGIN, Settings
from moetui.sizing.speed import EfficiencyFactors, SpeedPrediction
from moetui.sizing.workload import DEFAULT_WORKLOAD, WORKLOADS, Workload

DEFAULT_RAM_RESERVE = 2 * GIB  # what the OS and other programs keep
FALLBACK_RAM_BW_GBS = 20.0  # a rig without any RAM bandwidth figure (never for presets: they must have one)
FALLBACK_GPU_BW_GBS = 300.0

@dataclass
class PlanOptions:
    n_ctx: int | None = None  # target context (per sequence); None: min(native, 32768)
    vram_margin_bytes: int = DEFAULT_VRAM_MARGIN
    ram_reserve_bytes: int = DEFAULT_RAM_RESERVE
    vram_budget_bytes: int | None = None  # cap the total GPU budget ("what if I had X GB")
    cache_type: str | None = None  # force K/V type; None: f16, q8_0 when needed for the context
    n_ubatch: int | None = None  # None: the ubatch that pays for itself on the workload
    n_batch: int | None = None  # None: max(2048, n_ubatch)
    workload: Workload | None = None  # what a turn looks like; None: the "chat" workload
    load_mode: str | None = None  # None: pinned host buffers ("none") for RAM-resident weights on a GPU rig
    flash_attn: str = "auto"
    draft: ModelInfo | None = None
    n_parallel: int = 1
    swa_full: bool = True  # llama-cpp-python's default
    efficiency: EfficiencyFactors = field(default_factory=EfficiencyFactors)
    model_path: str | None = None  # what RunConfig.model_path says; default ModelInfo.path
    experts_in_ram: str = "last"  # which layers' experts stay in RAM: "last" (llama.cpp's fit) or "first" (--n-cpu-moe)

    @classmethod
    def for_settings(cls, settings: Settings, *, model_path: str | None = None, draft: ModelInfo | None = None,
                     efficiency: EfficiencyFactors | None = None) -> "PlanOptions":
        """The sizing core's options for the user's settings (the one way from one to the other). draft:
        the draft model's ModelInfo (read from settings.draft_path by the caller); efficiency: what a tune
        measured on this rig (None: the defaults)."""
        o = cls(n_ctx=settings.n_ctx, vram_margin_bytes=settings.margin, vram_budget_bytes=settings.vram_budget_bytes,
                cache_type=settings.cache_type, n_ubatch=settings.n_ubatch,
                n_batch=max(2048, settings.n_ubatch) if settings.n_ubatch else None, workload=settings.workload,
                draft=draft, model_path=model_path, experts_in_ram=settings.experts_in_ram,
                n_parallel=settings.n_parallel)
        if efficiency is not None:
            o.efficiency = efficiency
        return o


@dataclass
class LayerSummary:
    """For the TUI's layer drawing."""

    index: int
    device: str  # non-expert tensors
    is_moe: bool
    experts_gpu: list[str]  # parts on the layer's GPU
    experts_cpu: list[str]


@dataclass
class Plan:
    config: RunConfig
    mode: str  # "cpu_only" | "all_gpu" | "experts_split" | "partial_layers"
    memory: dict[str, MemoryBreakdown]
    budgets: dict[str, int]
    placement: list[tuple[str, str]]
    layers: list[LayerSummary]
    decode_tps: float
    prompt_tps: float
    n_cpu_moe: int | None  # --n-cpu-moe N when exactly equivalent
    max_ctx: int | None  # largest context that keeps the non-expert weights on the GPU (or fits RAM)
    explanation: list[str]
    speed: SpeedPrediction
    efficiency: EfficiencyFactors
    workload: Workload = field(default_factory=lambda: WORKLOADS[DEFAULT_WORKLOAD])
    turn_seconds: float = 0.0  # predicted seconds for one turn of the workload

    def llama_args(self) -> list[str]:
        """Placement flags for llama-server/llama-cli: `-ngl` plus `--n-cpu-moe N` or `-ot` overrides."""
        c = self.config

        def value(field: str, v: object = None) -> list[str]:  # spelled by the one table of llama.cpp flags
            return [flag(field), str(getattr(c, field) if v is None else v)]

        args = value("rpc_servers", ",".join(c.rpc_servers)) if c.rpc_servers else []  # before -ot: it names RPC buffers
        args += value("n_gpu_layers", "999" if c.n_gpu_layers < 0 else c.n_gpu_layers)
        if self.n_cpu_moe:
            args += ["--n-cpu-moe", str(self.n_cpu_moe)]
        else:
            for o in c.overrides:
                args += ["-ot", o.to_arg()]
        if c.tensor_split:
            args += value("tensor_split", ",".join(f"{x:g}" for x in c.tensor_split))
        args += value("n_ctx") + value("flash_attn") + value("cache_type_k") + value("cache_type_v")
        if (c.n_batch, c.n_ubatch) != (2048, 512):
            args += value("n_batch") + value("n_ubatch")
        if c.load_mode != "auto":
            args += value("load_mode")
        return args

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(), "mode": self.mode,
            "memory": {d: {**asdict(m), "total": m.total} for d, m in self.memory.items()},
            "budgets": self.budgets, "placement": [list(p) for p in self.placement],
            "layers": [asdict(l) for l in self.layers], "decode_tps": self.decode_tps, "prompt_tps": self.prompt_tps,
            "n_cpu_moe": self.n_cpu_moe, "max_ctx": self.max_ctx, "explanation": self.explanation,
            "llama_args": self.llama_args(), "efficiency": self.efficiency.to_dict(),
            "workload": self.workload.to_dict(), "turn_seconds": self.turn_seconds,
        }


def ram_budget(rig: Rig, o: PlanOptions) -> int:
    avail = rig.memory.available_bytes or rig.memory.total_bytes
    return max(0, avail - o.ram_reserve_bytes)


def math_threads(rig: Rig) -> int | None:
    """llama.cpp's own default thread count (cpu_get_num_math: the physical, performance cores), set
    explicitly because llama-cpp-python's default is half the logical CPUs, which halves the threads on
    CPUs without SMT (an H100 host with 16 cores: 8 threads, 30-50% slower decode with experts in RAM)."""
    n = rig.cpu.performance_cores or rig.cpu.physical_cores
    return n if n and n > 0 else None
