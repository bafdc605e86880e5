"""Entry point of the sizing core: plan(model, rig, options) -> Plan. Pure: no I/O, milliseconds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from moetui.config import DraftConfig, RunConfig
from moetui.errors import ConfigError, DoesNotFit
from moetui.hardware.rig import Rig
from moetui.model.info import KV_CACHE_TYPES, ModelInfo
from moetui.sizing import explain
from moetui.sizing.context import DEFAULT_TARGET_CTX, choose_context
from moetui.sizing.memory import GIB, MemoryBreakdown, compute_buffer_bytes, kv_cache_bytes
from moetui.sizing.overrides import cpu_expert_overrides, n_cpu_moe_equivalent
from moetui.sizing.placement import (
    Assignment, MemorySettings, SearchResult, cpu_expert_map, experts_on_cpu_fraction, gpu_device_name,
    hops_per_token, place, tensor_placement,
)
from moetui.sizing.speed import EfficiencyFactors, SpeedPrediction, predict

DEFAULT_VRAM_MARGIN = GIB // 2  # headroom for the desktop, fragmentation, other processes
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
    n_ubatch: int = 512
    n_batch: int = 2048
    flash_attn: str = "auto"
    draft: ModelInfo | None = None
    n_parallel: int = 1
    swa_full: bool = True  # llama-cpp-python's default
    efficiency: EfficiencyFactors = field(default_factory=EfficiencyFactors)
    model_path: str | None = None  # what RunConfig.model_path says; default ModelInfo.path


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

    def llama_args(self) -> list[str]:
        """Placement flags for llama-server/llama-cli: `-ngl` plus `--n-cpu-moe N` or `-ot` overrides."""
        c = self.config
        args = ["--rpc", ",".join(c.rpc_servers)] if c.rpc_servers else []  # before -ot: it names RPC buffers
        args += ["-ngl", "999" if c.n_gpu_layers < 0 else str(c.n_gpu_layers)]
        if self.n_cpu_moe:
            args += ["--n-cpu-moe", str(self.n_cpu_moe)]
        else:
            for o in c.overrides:
                args += ["-ot", o.to_arg()]
        if c.tensor_split:
            args += ["-ts", ",".join(f"{x:g}" for x in c.tensor_split)]
        args += ["-c", str(c.n_ctx), "-fa", c.flash_attn, "-ctk", c.cache_type_k, "-ctv", c.cache_type_v]
        return args

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(), "mode": self.mode,
            "memory": {d: {**asdict(m), "total": m.total} for d, m in self.memory.items()},
            "budgets": self.budgets, "placement": [list(p) for p in self.placement],
            "layers": [asdict(l) for l in self.layers], "decode_tps": self.decode_tps, "prompt_tps": self.prompt_tps,
            "n_cpu_moe": self.n_cpu_moe, "max_ctx": self.max_ctx, "explanation": self.explanation,
            "llama_args": self.llama_args(), "efficiency": self.efficiency.to_dict(),
        }


# ---- budgets --------------------------------------------------------------------------------------
def gpu_budgets(rig: Rig, o: PlanOptions) -> tuple[list[str], dict[str, int], list[float], list[str]]:
    """(device names, budget per device, tensor_split fractions, notes). Empty when the GPU can't be used."""
    notes: list[str] = []
    if not rig.gpus:
        return [], {}, [], ["no GPU found: everything on the CPU"]
    if not rig.build.gpu_offload:
        why = rig.build.advice or "the installed llama.cpp build has no GPU backend"
        return [], {}, [], [f"{why}: everything on the CPU (n_gpu_layers 0)"]
    names, budgets, weights = [], {}, []
    cap = o.vram_budget_bytes
    total_free = sum((g.vram_free_bytes or g.vram_total_bytes) for g in rig.gpus) or 1
    for i, g in enumerate(rig.gpus):
        name = gpu_device_name(g, i)
        free = g.vram_free_bytes or g.vram_total_bytes
        b = free - o.vram_margin_bytes
        if cap is not None:
            b = min(b, int(cap * free / total_free))
        names.append(name)
        budgets[name] = max(0, b)
        # split layers by usable memory, nudged by bandwidth (a slower card gets proportionally fewer)
        bw = g.mem_bandwidth_gbs or FALLBACK_GPU_BW_GBS
        weights.append(max(0, b) * (bw / max((x.mem_bandwidth_gbs or FALLBACK_GPU_BW_GBS) for x in rig.gpus)) ** 0.5)
        notes.append(f"{name} ({g.name}): {explain.gb(free)} free - {explain.gb(o.vram_margin_bytes)} margin = "
                     f"{explain.gb(budgets[name])} budget")
    return names, budgets, weights, notes


def ram_budget(rig: Rig, o: PlanOptions) -> int:
    avail = rig.memory.available_bytes or rig.memory.total_bytes
    return max(0, avail - o.ram_reserve_bytes)


# ---- the plan -------------------------------------------------------------------------------------
def _validate(model: ModelInfo, o: PlanOptions) -> None:
    if o.n_ctx is not None and o.n_ctx <= 0:
        raise ConfigError(f"context must be positive, not {o.n_ctx}")
    if o.n_ctx is not None and model.context_length and o.n_ctx > model.context_length:
        raise ConfigError(f"context {o.n_ctx} is beyond {model.name or 'the model'}'s native context "
                          f"{model.context_length}; ask for at most {model.context_length}")
    if o.cache_type is not None and o.cache_type not in KV_CACHE_TYPES:
        raise ConfigError(f"KV cache type must be one of {', '.join(KV_CACHE_TYPES)}, not {o.cache_type!r}")
    if o.n_ubatch <= 0 or o.n_batch <= 0 or o.n_ubatch > o.n_batch:
        raise ConfigError("n_ubatch and n_batch must be positive and n_ubatch <= n_batch")
    if o.n_parallel < 1:
        raise ConfigError("n_parallel must be >= 1")
    if o.vram_margin_bytes < 0 or o.ram_reserve_bytes < 0:
        raise ConfigError("margins must be >= 0")
    if not model.tensors or model.n_layers <= 0:
        raise ConfigError(f"{model.path}: no tensors to place")


def math_threads(rig: Rig) -> int | None:
    """llama.cpp's own default thread count (cpu_get_num_math: the physical, performance cores), set
    explicitly because llama-cpp-python's default is half the logical CPUs, which halves the threads on
    CPUs without SMT (an H100 host with 16 cores: 8 threads, 30-50% slower decode with experts in RAM)."""
    n = rig.cpu.performance_cores or rig.cpu.physical_cores
    return n if n and n > 0 else None


def plan(model: ModelInfo, rig: Rig, options: PlanOptions | None = None) -> Plan:
    o = options or PlanOptions()
    _validate(model, o)
    if rig.remotes:  # RPC servers on other hosts (detect --rpc): moetui.sizing.remote splits across them
        from moetui.sizing.remote import plan_across_hosts
        return plan_across_hosts(model, rig, o)
    why: list[str] = []
    gpus, budgets, fractions, gnotes = gpu_budgets(rig, o)
    why += gnotes
    ram = ram_budget(rig, o)
    budgets_all = {**budgets, "CPU": ram}
    # with repacking off (--no-repack) llama.cpp makes no CPU_REPACK copies: no flag enables one
    flags, arch = (rig.cpu.flags if rig.build.repack_safe is not False else []), rig.cpu.arch
    native = model.context_length or 4096
    explicit = o.n_ctx is not None
    target = (o.n_ctx if explicit else min(native, DEFAULT_TARGET_CTX)) * o.n_parallel

    def settings(ctx: int, kv: str) -> MemorySettings:
        fa = o.flash_attn == "on" or (o.flash_attn == "auto") or kv != "f16"
        return MemorySettings(ctx, kv, kv, o.n_ubatch, fa, o.swa_full, o.n_parallel)

    cache: dict[tuple[int, str, bool], SearchResult] = {}

    def search(ctx: int, kv: str) -> SearchResult:
        key = (ctx, kv, True)
        if key not in cache:
            cache[key] = place(model, gpus, budgets, fractions, settings(ctx, kv), flags, arch)
        return cache[key]

    def ram_ok(r: SearchResult) -> bool:
        return r.memory["CPU"].total <= ram

    def good(ctx: int, kv: str) -> bool:
        r = search(ctx, kv)
        return ram_ok(r) and (not gpus or r.mode in ("all_gpu", "experts_split"))

    def feasible(ctx: int, kv: str) -> bool:
        return ram_ok(search(ctx, kv))

    choice = choose_context(target, explicit, native * o.n_parallel, o.cache_type, good, feasible)
    if choice is None:
        kv = o.cache_type or "q8_0"
        r = search(256, kv)
        short = r.memory["CPU"].total - ram
        raise DoesNotFit(
            f"{model.name or model.path} does not fit this rig even at the smallest context: RAM budget "
            f"{explain.gb(ram)} is {explain.gb(max(short, 0))} short"
            + (f" after filling {explain.gb(sum(budgets.values()))} of GPU memory" if gpus else "")
            + " (a smaller quant, more RAM, or a lower --margin)")
    why += choice.reason
    r = search(choice.n_ctx, choice.cache_type)
    a = r.assignment
    why += r.notes

    cpu_map = cpu_expert_map(model, a)
    equiv_map = dict(cpu_map)
    for il in range(model.n_layers):  # dense layers match no expert regex: they don't break equivalence
        if not model.layers[il].is_moe and il < max(cpu_map, default=-1):
            equiv_map.setdefault(il, {"up", "gate", "down"})
    n_cpu_moe = n_cpu_moe_equivalent(equiv_map) if r.mode in ("experts_split", "all_gpu") else None
    overrides = cpu_expert_overrides(cpu_map) if r.mode == "experts_split" else []
    if r.mode == "experts_split" and n_cpu_moe == 0:
        n_cpu_moe = None
    flash = "on" if (choice.flash_attn_required or choice.cache_type != "f16") else o.flash_attn
    ngl = -1 if r.mode in ("all_gpu", "experts_split") else (a.n_gpu_layers if r.mode == "partial_layers" else 0)
    cfg = RunConfig(
        model_path=o.model_path or model.path, n_ctx=choice.n_ctx, n_gpu_layers=ngl, overrides=overrides,
        split_mode="layer", tensor_split=[round(f / sum(fractions), 4) for f in fractions] if len(gpus) > 1 else None,
        flash_attn=flash, cache_type_k=choice.cache_type, cache_type_v=choice.cache_type,
        n_batch=o.n_batch, n_ubatch=o.n_ubatch, n_parallel=o.n_parallel,
        n_threads=math_threads(rig), n_threads_batch=math_threads(rig),
        repack=rig.build.repack_safe is not False,
    )
    if not cfg.repack:
        why.append(f"Weight repacking off (--no-repack): {rig.build.repack_note or 'it crashes on this CPU'}.")
    if r.mode == "partial_layers":
        # experts of GPU layers must be forced to CPU too (non-expert tensors of those layers stay on GPU)
        cfg.overrides = cpu_expert_overrides({il: {"up", "gate", "down"} for il in range(model.n_layers)
                                              if model.layers[il].is_moe and a.layer_device[il] != "CPU"})

    memory = r.memory
    # draft model: whole on the first GPU when it fits in what is left, else on the CPU
    if o.draft is not None:
        why.append(_place_draft(o.draft, cfg, memory, budgets_all, gpus, choice.n_ctx, o))

    placement = tensor_placement(model, a)
    layers = []
    for il in range(model.n_layers):
        li = model.layers[il]
        parts = sorted(li.expert_bytes)
        cpu_parts = sorted(p for p in parts if a.tensor_device(_rec(model, il, p)) == "CPU") if parts else []
        layers.append(LayerSummary(il, a.layer_device[il], li.is_moe, [p for p in parts if p not in cpu_parts], cpu_parts))

    bws = {"CPU": rig.ram_bandwidth_gbs or rig.memory.theoretical_bandwidth_gbs or FALLBACK_RAM_BW_GBS}
    pcie = None
    for i, g in enumerate(rig.gpus):
        name = gpu_device_name(g, i)
        bws[name] = g.mem_bandwidth_gbs or FALLBACK_GPU_BW_GBS
        pcie = min(pcie or 1e9, g.pcie_bandwidth_gbs or (bws[name] if g.unified_memory else 16.0))
    n_by_dev: dict[str, int] = {}
    for d in a.layer_device:
        n_by_dev[d] = n_by_dev.get(d, 0) + 1
    sp = predict(model, placement, n_by_dev, bws, rig.cpu.physical_cores, hops_per_token(model, a),
                 pcie, o.n_ubatch, o.efficiency)

    # explanation
    frac = experts_on_cpu_fraction(model, a)
    why.insert(0, explain.mode_line(r.mode, model, a.n_gpu_layers if r.mode == "partial_layers" else model.n_layers,
                                    frac, n_cpu_moe, gpus))
    for d, m in memory.items():
        if d != "CPU" and d not in set(a.layer_device):
            continue
        detail = (f"weights {explain.gb(m.weights)}, KV {explain.gb(m.kv)}, compute {explain.gb(m.compute)}, "
                  f"runtime {explain.gb(m.overhead)}")
        why.append(explain.budget_line(d, m.total, budgets_all.get(d, 0), detail))
    why.append(f"context {cfg.n_ctx} tokens, KV cache {cfg.cache_type_k}: "
               f"{explain.gb(kv_cache_bytes(model, cfg.n_ctx, cfg.cache_type_k, cfg.cache_type_v, o.swa_full))}"
               + (" (SWA layers at full size: swa_full)" if model.swa_layers and o.swa_full else ""))
    slowest = max(sp.decode_seconds_by_device.items(), key=lambda kv: kv[1])[0] if sp.decode_seconds_by_device else "?"
    why.append(explain.speed_line(sp.decode_tps, sp.prompt_tps, sp.prompt_bound, slowest))
    why += sp.notes
    cfg.notes = list(why)

    max_ctx = _max_ctx(native * o.n_parallel, choice.cache_type, good)
    return Plan(cfg, r.mode, memory, budgets_all, placement, layers, sp.decode_tps, sp.prompt_tps,
                n_cpu_moe, max_ctx, why, sp, o.efficiency)


def _rec(model: ModelInfo, il: int, part: str):  # the first expert tensor of that part in layer il
    for t in model.tensors:
        if t.layer == il and t.expert_part == part:
            return t
    raise KeyError(part)


def _max_ctx(native: int, kv: str, good) -> int | None:
    from moetui.sizing.context import largest_fitting

    return largest_fitting(256, native, lambda c: good(c, kv))


def _place_draft(draft: ModelInfo, cfg: RunConfig, memory: dict[str, MemoryBreakdown], budgets: dict[str, int],
                 gpus: list[str], n_ctx: int, o: PlanOptions) -> str:
    kv = kv_cache_bytes(draft, n_ctx, cfg.cache_type_k, cfg.cache_type_v, o.swa_full)
    comp = compute_buffer_bytes(draft, n_ctx, o.n_ubatch, cfg.flash_attn != "off")
    embd = draft.bytes_by_role.get("token_embedding", 0)
    need_gpu = draft.total_bytes - embd + kv + comp
    for g in gpus:
        if memory[g].total + need_gpu <= budgets.get(g, 0):
            memory[g].weights += draft.total_bytes - embd
            memory[g].kv += kv
            memory[g].compute += comp
            memory["CPU"].weights += embd
            cfg.draft = DraftConfig(kind="model", model_path=draft.path, n_gpu_layers=-1, n_ctx=None)
            return f"draft model {draft.name}: on {g} ({explain.gb(need_gpu)})"
    memory["CPU"].weights += draft.total_bytes
    memory["CPU"].kv += kv
    memory["CPU"].compute += comp
    cfg.draft = DraftConfig(kind="model", model_path=draft.path, n_gpu_layers=0, n_ctx=None)
    return (f"draft model {draft.name}: on the CPU ({explain.gb(draft.total_bytes + kv + comp)}); no GPU room left"
            if gpus else f"draft model {draft.name}: on the CPU")
