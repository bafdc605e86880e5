"""Entry point of the sizing core: plan(model, rig, options) -> Plan. Pure: no I/O, milliseconds."""

from __future__ import annotations

from dataclasses import replace

from moetui.config import LOAD_MODES, DraftConfig, RunConfig
from moetui.errors import ConfigError, DoesNotFit
from moetui.hardware.rig import Rig
from moetui.model.info import KV_CACHE_TYPES, ModelInfo
from moetui.sizing import explain
from moetui.sizing.context import DEFAULT_TARGET_CTX, choose_context, largest_fitting
from moetui.sizing.memory import MemoryBreakdown, compute_buffer_bytes, kv_cache_bytes
from moetui.sizing.overrides import cpu_expert_overrides, n_cpu_moe_equivalent
from moetui.sizing.placement import (
    EXPERT_RAM_ORDERS, MemorySettings, SearchResult, cpu_expert_map, experts_on_cpu_fraction, gpu_device_name,
    hops_per_token, place, tensor_placement,
)
from moetui.sizing.speed import predict
from moetui.sizing.workload import DEFAULT_WORKLOAD, WORKLOADS, Workload
from moetui.sizing.plan_types import (  # noqa: F401  (re-exported: the plan's types live there)
    DEFAULT_RAM_RESERVE, DEFAULT_VRAM_MARGIN, FALLBACK_GPU_BW_GBS, FALLBACK_RAM_BW_GBS, LayerSummary, Plan,
    PlanOptions, math_threads, ram_budget,
)
from moetui.sizing.remote import plan_across_hosts

# ubatch sizes the plan weighs against each other for the workload (llama.cpp's default is 512)
UBATCH_CANDIDATES = (512, 1024, 2048, 4096)
# turns within this share of the shortest count as a tie, won by the faster prompt (first token sooner)
UBATCH_MIN_GAIN = 0.03
# pinned host memory cannot be swapped or reclaimed: pin RAM-resident weights only while they leave
# this share of the machine's RAM to everything else
PINNED_MAX_SHARE = 0.7
# a q8_0 KV cache (flash attention on) replaces f16 only when the predicted turn is this much shorter
KV_Q8_MIN_GAIN = 0.02


# ---- budgets --------------------------------------------------------------------------------------
def gpu_usable(rig: Rig) -> bool:
    """Whether a plan for this rig can put anything on a GPU: one was found and the build can offload."""
    return bool(rig.gpus) and rig.build.gpu_offload


def gpu_budgets(rig: Rig, o: PlanOptions) -> tuple[list[str], dict[str, int], list[float], list[str]]:
    """(device names, budget per device, tensor_split fractions, notes). Empty when the GPU can't be used."""
    notes: list[str] = []
    if not rig.gpus:
        return [], {}, [], ["no GPU found on this machine"]
    if not rig.build.gpu_offload:
        why = rig.build.advice or "the installed llama.cpp build has no GPU backend"
        return [], {}, [], [f"{why}; until then the GPU is not used"]
    names, budgets, weights = [], {}, []
    cap = o.vram_budget_bytes
    total_free = sum((g.vram_free_bytes or g.vram_total_bytes) for g in rig.gpus) or 1
    for i, g in enumerate(rig.gpus):
        name = gpu_device_name(g, i)
        free = g.vram_free_bytes or g.vram_total_bytes
        b = free - o.vram_margin_bytes
        share = None if cap is None else int(cap * free / total_free)
        capped = share is not None and share < b
        if share is not None:
            b = min(b, share)
        names.append(name)
        budgets[name] = max(0, b)
        # split layers by usable memory, nudged by bandwidth (a slower card gets proportionally fewer)
        bw = g.mem_bandwidth_gbs or FALLBACK_GPU_BW_GBS
        weights.append(max(0, b) * (bw / max((x.mem_bandwidth_gbs or FALLBACK_GPU_BW_GBS) for x in rig.gpus)) ** 0.5)
        notes.append(f"{name} ({g.name}): {explain.gb(free)} free - {explain.gb(o.vram_margin_bytes)} margin"
                     + (f", capped at its share of the {explain.gb(cap)} VRAM budget (--vram-budget)" if capped else "")
                     + f" = {explain.gb(budgets[name])} budget")
    return names, budgets, weights, notes


# ---- the plan -------------------------------------------------------------------------------------
MIN_CTX = 256  # the smallest context planned (and the one tried when nothing else fits)


def _validate(model: ModelInfo, o: PlanOptions) -> None:
    if o.n_ctx is not None and o.n_ctx < MIN_CTX:  # a few tokens hold no prompt: a plan for them is noise
        raise ConfigError(f"context must be at least {MIN_CTX} tokens, not {o.n_ctx}")
    if o.n_ctx is not None and model.context_length and o.n_ctx > model.context_length:
        raise ConfigError(f"context {o.n_ctx} is beyond {model.name or 'the model'}'s native context "
                          f"{model.context_length}; ask for at most {model.context_length}")
    if o.cache_type is not None and o.cache_type not in KV_CACHE_TYPES:
        raise ConfigError(f"KV cache type must be one of {', '.join(KV_CACHE_TYPES)}, not {o.cache_type!r}")
    if o.n_ubatch is not None and o.n_ubatch <= 0 or o.n_batch is not None and o.n_batch <= 0:
        raise ConfigError("n_ubatch and n_batch must be positive")
    if o.n_ubatch is not None and o.n_batch is not None and o.n_ubatch > o.n_batch:
        raise ConfigError("n_ubatch must be <= n_batch")
    if o.load_mode is not None and o.load_mode not in LOAD_MODES:
        raise ConfigError(f"load mode must be one of {', '.join(LOAD_MODES)}, not {o.load_mode!r}")
    if o.n_parallel < 1:
        raise ConfigError("n_parallel must be >= 1")
    if o.experts_in_ram not in EXPERT_RAM_ORDERS:
        raise ConfigError(f"experts in RAM must be one of {', '.join(EXPERT_RAM_ORDERS)}, not {o.experts_in_ram!r}")
    if o.vram_margin_bytes < 0 or o.ram_reserve_bytes < 0:
        raise ConfigError("margins must be >= 0")
    if not model.tensors or model.n_layers <= 0:
        raise ConfigError(f"{model.path}: no tensors to place")



def ubatch_candidates(workload: Workload, gpu_offload: bool) -> list[int]:
    """Ubatches worth weighing: on a GPU rig, up to the workload's prompt (a ubatch larger than the prompt
    buys nothing and costs VRAM); on the CPU the ubatch barely moves prompt speed, so llama.cpp's 512."""
    if not gpu_offload:
        return [UBATCH_CANDIDATES[0]]
    return [u for u in UBATCH_CANDIDATES if u == UBATCH_CANDIDATES[0] or u <= workload.prompt_tokens]


def plan(model: ModelInfo, rig: Rig, options: PlanOptions | None = None) -> Plan:
    """The plan for this model on this rig. Unless the ubatch is given, every candidate ubatch is planned
    (a larger one takes compute-buffer VRAM, so experts move to RAM) and the one with the shortest turn of
    the workload wins; turns within UBATCH_MIN_GAIN of it tie, and the tie goes to the faster prompt."""
    o = options or PlanOptions()
    _validate(model, o)
    workload = o.workload or WORKLOADS[DEFAULT_WORKLOAD]
    if rig.remotes:  # RPC servers on other hosts (detect --rpc): moetui.sizing.remote splits across them
        ub = o.n_ubatch or UBATCH_CANDIDATES[0]
        p = plan_across_hosts(model, rig, replace(o, n_ubatch=ub, n_batch=o.n_batch or max(2048, ub)), plan)
        p.workload, p.turn_seconds = workload, workload.turn_seconds(p.prompt_tps, p.decode_tps)
        return p
    best = _plan_ubatch(model, rig, o, workload)
    if o.cache_type is None and best.mode == "experts_split" and best.config.cache_type_k == "f16":
        best = _weigh_q8_cache(model, rig, o, workload, best)
    return best


def _plan_ubatch(model: ModelInfo, rig: Rig, o: PlanOptions, workload: Workload) -> Plan:
    """At the user's ubatch, or the best of the candidates."""
    if o.n_ubatch is not None:
        return _plan_at(model, rig, replace(o, n_batch=o.n_batch or max(2048, o.n_ubatch)), workload)
    return _best_ubatch(model, rig, o, workload)


def _best_ubatch(model: ModelInfo, rig: Rig, o: PlanOptions, workload: Workload) -> Plan:
    """Every candidate ubatch planned; the shortest turn wins, turns within UBATCH_MIN_GAIN of it tie and
    the tie goes to the faster prompt. The first candidate chooses the context (and the KV type unless
    o.cache_type forces it); the others are weighed at that context."""
    plans: list[Plan] = []
    for ub in ubatch_candidates(workload, gpu_usable(rig)):
        at = replace(o, n_ubatch=ub, n_batch=max(o.n_batch or 2048, ub))
        if plans:  # the first plan chose the context; the others are weighed at that context only
            first = plans[0].config
            at = replace(at, n_ctx=first.n_ctx // o.n_parallel, cache_type=first.cache_type_k)
        try:
            p = _plan_at(model, rig, at, workload, with_max_ctx=not plans)
        except DoesNotFit:
            if not plans:
                raise
            break
        plans.append(p)
    # the shortest turn wins; among turns within UBATCH_MIN_GAIN of it, the fastest prompt, i.e. the
    # shortest wait for the first token (what a person notices first)
    shortest = min(p.turn_seconds for p in plans)
    best = max((p for p in plans if p.turn_seconds <= shortest * (1 + UBATCH_MIN_GAIN)),
               key=lambda p: (p.prompt_tps, -p.config.n_ubatch))
    if best is not plans[0]:  # again with the user's own options, for the reasons and the largest context
        full = _plan_at(model, rig, replace(o, n_ubatch=best.config.n_ubatch, n_batch=best.config.n_batch), workload)
        best = full if full.config.n_ctx >= plans[0].config.n_ctx else plans[0]  # never trade context away
    if len(plans) > 1:
        trade = ", ".join(f"-ub {p.config.n_ubatch}: {p.turn_seconds:.2f} s" for p in plans)
        best.explanation.append(f"ubatch {best.config.n_ubatch} for the {workload.name} workload "
                                f"({workload.describe().split(': ', 1)[1]}); predicted seconds per turn: {trade}")
        best.config.notes = list(best.explanation)
    return best


def _weigh_q8_cache(model: ModelInfo, rig: Rig, o: PlanOptions, workload: Workload, f16: Plan) -> Plan:
    """With experts in RAM every byte of GPU memory is an expert tensor that decode need not read from
    RAM: a q8_0 cache (half of f16's bytes) leaves room for more of them. It wins only when the turn it
    predicts is KV_Q8_MIN_GAIN shorter, since it is not bit-identical to f16; never at a shorter context."""
    try:
        q8 = _plan_ubatch(model, rig, replace(o, n_ctx=f16.config.n_ctx // o.n_parallel, cache_type="q8_0"), workload)
    except DoesNotFit:
        return f16
    if q8.config.n_ctx < f16.config.n_ctx or q8.turn_seconds > f16.turn_seconds * (1 - KV_Q8_MIN_GAIN):
        f16.explanation.append(f"KV cache f16: q8_0 would predict {q8.turn_seconds:.2f} s per turn against "
                               f"{f16.turn_seconds:.2f} s, not worth the cache's lower precision")
        f16.config.notes = list(f16.explanation)
        return f16
    gpu = [d for d in q8.memory if d != "CPU"]
    freed = sum(f16.memory[d].kv - q8.memory[d].kv for d in gpu)
    moved = sum(q8.memory[d].weights - f16.memory[d].weights for d in gpu)
    q8.explanation.append(
        f"KV cache q8_0, not f16: it halves the cache ({explain.gb(freed)} freed on the GPU), so "
        f"{explain.gb(moved)} more expert weights stay on the GPU and decode reads less from RAM; predicted "
        f"{q8.turn_seconds:.2f} s per turn against {f16.turn_seconds:.2f} s with f16 (--kv f16 keeps f16)")
    q8.config.notes = list(q8.explanation)
    return q8


def _plan_at(model: ModelInfo, rig: Rig, o: PlanOptions, workload: Workload, with_max_ctx: bool = True) -> Plan:
    assert o.n_ubatch is not None and o.n_batch is not None
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
            cache[key] = place(model, gpus, budgets, fractions, settings(ctx, kv), flags, arch, o.experts_in_ram)
        return cache[key]

    def ram_ok(r: SearchResult) -> bool:
        return r.memory["CPU"].total <= ram

    def good(ctx: int, kv: str) -> bool:
        r = search(ctx, kv)
        return ram_ok(r) and (not gpus or r.mode in ("all_gpu", "experts_split"))

    def feasible(ctx: int, kv: str) -> bool:
        return ram_ok(search(ctx, kv))

    choice = choose_context(target, explicit, native * o.n_parallel, o.cache_type, good, feasible, on_gpu=bool(gpus))
    if choice is None:
        kv = o.cache_type or "q8_0"
        r = search(MIN_CTX, kv)
        short = r.memory["CPU"].total - ram
        # a lower --margin frees at most the margin itself on each GPU: named only where that closes the gap
        margin_helps = bool(gpus) and short <= o.vram_margin_bytes * len(gpus)
        raise DoesNotFit(
            f"{model.name or model.path} does not fit this rig even at the smallest context: RAM budget "
            f"{explain.gb(ram)} is {explain.gb(max(short, 0))} short"
            + (f" after filling {explain.gb(sum(budgets.values()))} of GPU memory" if gpus else "")
            + (" (a smaller quant, more RAM, or a lower --margin)" if margin_helps else " (a smaller quant or more RAM)"))
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
    pinned = _choose_load_mode(cfg, r.mode, memory, rig, o, why)
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
    ram_bw_theoretical = not rig.ram_bandwidth_gbs and bool(rig.memory.theoretical_bandwidth_gbs)
    pcie = None
    for i, g in enumerate(rig.gpus):
        name = gpu_device_name(g, i)
        bws[name] = g.mem_bandwidth_gbs or FALLBACK_GPU_BW_GBS
        pcie = min(pcie or 1e9, g.pcie_bandwidth_gbs or (bws[name] if g.unified_memory else 16.0))
    n_by_dev: dict[str, int] = {}
    for d in a.layer_device:
        n_by_dev[d] = n_by_dev.get(d, 0) + 1
    # decode reads the KV cache filled so far: the workload's depth plus half its prompt and reply
    depth = min(cfg.n_ctx, workload.depth + (workload.prompt_tokens + workload.reply_tokens) // 2)
    kv_read = {d: m.kv * depth / max(cfg.n_ctx, 1) for d, m in memory.items() if m.kv}
    sp = predict(model, placement, n_by_dev, bws, rig.cpu.physical_cores, hops_per_token(model, a),
                 pcie, o.n_ubatch, o.efficiency, kv_bytes_by_device=kv_read, pinned=pinned,
                 n_threads=cfg.n_threads, ram_bw_theoretical=ram_bw_theoretical)

    # explanation
    frac = experts_on_cpu_fraction(model, a)
    gpu_layers = sum(1 for d in a.layer_device if d != "CPU")
    why.insert(0, explain.mode_line(r.mode, model, gpu_layers if r.mode == "partial_layers" else model.n_layers,
                                    frac, n_cpu_moe, gpus, o.experts_in_ram))
    for d, m in memory.items():
        if d != "CPU" and d not in set(a.layer_device):
            continue
        detail = (f"weights {explain.gb(m.weights)}, KV {explain.gb(m.kv)}, compute {explain.gb(m.compute)}, "
                  f"runtime {explain.gb(m.overhead)}")
        why.append(explain.budget_line(d, m.total, budgets_all.get(d, 0), detail))
    kv_now = kv_cache_bytes(model, cfg.n_ctx, cfg.cache_type_k, cfg.cache_type_v, o.swa_full)
    swa_note = ""
    if model.swa_layers and o.swa_full:
        windowed = kv_cache_bytes(model, cfg.n_ctx, cfg.cache_type_k, cfg.cache_type_v, False, n_ubatch=cfg.n_ubatch)
        swa_note = (f" (the {len(model.swa_layers)} sliding-window layers at full size, swa_full: moetui's runtime "
                    f"reuses the cached prompt across turns, which a {model.sliding_window}-token window cannot; "
                    f"windowed they would take {explain.gb(kv_now - windowed)} less)")
    if model.is_hybrid:
        swa_note += (f" ({len(model.attention_layers)} attention layers; the {len(model.recurrent_layers)} recurrent "
                     f"layers hold {explain.gb(model.recurrent_state_bytes(o.n_parallel))} of state, whatever the context)")
    why.append(f"context {cfg.n_ctx} tokens, KV cache {cfg.cache_type_k}: {explain.gb(kv_now)}" + swa_note)
    slowest = max(sp.decode_seconds_by_device.items(), key=lambda kv: kv[1])[0] if sp.decode_seconds_by_device else "?"
    why.append(explain.speed_line(sp.decode_tps, sp.prompt_tps, sp.prompt_bound, slowest, o.efficiency.source))
    why += sp.notes
    cfg.notes = list(why)

    max_ctx = _max_ctx(native * o.n_parallel, choice.cache_type, good) if with_max_ctx else None
    turn = workload.turn_seconds(sp.prompt_tps, sp.decode_tps)
    why.append(f"predicted {turn:.2f} s per turn of the {workload.name} workload ({workload.describe().split(': ', 1)[1]})")
    cfg.notes = list(why)
    return Plan(cfg, r.mode, memory, budgets_all, placement, layers, sp.decode_tps, sp.prompt_tps,
                n_cpu_moe, max_ctx, why, sp, o.efficiency, workload, turn)


def _choose_load_mode(cfg: RunConfig, mode: str, memory: dict[str, MemoryBreakdown], rig: Rig, o: PlanOptions,
                      why: list[str]) -> bool:
    """Weights in pinned host buffers (load mode none) when a GPU runs the graph and some weights live in RAM:
    for batches of 32 tokens and more llama.cpp copies RAM-resident weights to the GPU per ubatch, at the
    full PCIe rate only from pinned memory (prompt 2.1x faster at ubatch 512 on an H200, decode unchanged).
    Repacked CPU buffers are not used then (llama.cpp prefers the GPU's host buffer type). Returns pinned."""
    if o.load_mode is not None:
        cfg.load_mode = o.load_mode
        return o.load_mode == "none" and mode in ("experts_split", "partial_layers")
    if mode not in ("experts_split", "partial_layers"):
        return False
    cpu_weights = memory["CPU"].weights
    total_ram = rig.memory.total_bytes or 0
    if total_ram and cpu_weights > PINNED_MAX_SHARE * total_ram:
        why.append(f"load mode auto (mmap): pinning {explain.gb(cpu_weights)} of weights would leave too little "
                   f"of {explain.gb(total_ram)} RAM to the rest of the system")
        return False
    cfg.load_mode = "none"
    memory["CPU"].repack = 0
    why.append(f"load mode none: the {explain.gb(cpu_weights)} of weights in RAM go to pinned host memory, so the "
               "GPU copies them at the full PCIe rate for prompts (about 2x faster prompt processing than mmap, "
               "same decode); if the driver cannot pin that much, llama.cpp falls back to ordinary RAM")
    return True


def _rec(model: ModelInfo, il: int, part: str):  # the first expert tensor of that part in layer il
    for t in model.tensors:
        if t.layer == il and t.expert_part == part:
            return t
    raise KeyError(part)


def _max_ctx(native: int, kv: str, good) -> int | None:
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
