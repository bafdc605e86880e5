"""Where each tensor goes, at tensor granularity, given a byte budget per device.

Order of priority (what buys the most decode speed per GPU byte): everything that is not a routed expert
and the KV cache on the GPU; then routed experts from the HIGHEST layer down — llama.cpp's --n-cpu-moe N
puts the first N layers' experts on the CPU, so whole-layer placements are exactly `--n-cpu-moe N` —
with the boundary layer split by part (up / gate / down); the rest in RAM. If even the non-expert
weights do not fit, partial layer offload (llama.cpp's -ngl N: the output head and the last N - 1 layers on the
GPU, every expert on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moetui.hardware.rig import GPUInfo, Rig
from moetui.model.info import ModelInfo, TensorRecord
from moetui.sizing.memory import (
    CPU_RUNTIME_OVERHEAD, MemoryBreakdown, gpu_runtime_overhead, compute_buffer_bytes, gpu_compute_buffer_bytes,
    host_compute_bytes, kv_layer_bytes, repack_enabled,
)
from moetui.sizing.overrides import ALL_PARTS, part_in
from moetui.sizing.settings import EXPERT_RAM_ORDERS

PART_ORDER = ("up", "gate", "down", "gate_up")  # order parts of the boundary layer are tried
# Which layers' experts stay in RAM when not all fit on the GPU. On the H200 capped at 8 and 12 GiB
# (tuning/results/speed_vs_fit.md, same llama-bench run, same cache type, pinned weights) the LAST layers
# in RAM (llama.cpp's fit does that) processed prompts 9-14% faster than as many FIRST layers
# (--n-cpu-moe), at ubatch 512 and 2048, with decode the same or faster: LAST is the planner's default.
FIRST, LAST = EXPERT_RAM_ORDERS


def gpu_device_name(gpu: GPUInfo, i: int) -> str:
    """The ggml buffer-type name llama.cpp uses for this GPU (what `-ot ...=NAME` takes)."""
    prefix = {"nvidia": "CUDA", "amd": "ROCm", "apple": "Metal"}.get(gpu.vendor, "CUDA")
    return "Metal" if prefix == "Metal" else f"{prefix}{i}"


@dataclass
class MemorySettings:
    n_ctx: int
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    n_ubatch: int = 512
    flash_attn: bool = True
    swa_full: bool = True
    n_parallel: int = 1


@dataclass
class Assignment:
    """A placement: device of each layer's non-expert tensors, CPU experts, output device."""

    gpus: list[str]  # device names in llama.cpp order
    layer_device: list[str]  # per layer
    cpu_experts: dict[int, set[str]] = field(default_factory=dict)  # layer -> parts on CPU
    output_device: str = "CPU"
    n_gpu_layers: int = -1  # -1: all (llama.cpp's 999)
    tensor_split: list[float] | None = None

    def tensor_device(self, t: TensorRecord) -> str:
        if t.name.startswith("token_embd."):
            return "CPU"  # llama.cpp keeps the input embedding on the CPU (row lookups)
        if t.layer is None:
            return self.output_device  # output, output_norm
        dev = self.layer_device[t.layer]
        if t.expert_part is not None and dev != "CPU":
            parts = self.cpu_experts.get(t.layer, set())
            part = t.expert_part
            if part_in(part, parts):
                return "CPU"
        return dev


def tensor_placement(model: ModelInfo, a: Assignment) -> list[tuple[str, str]]:
    return [(t.name, a.tensor_device(t)) for t in model.tensors]


def memory_by_device(model: ModelInfo, a: Assignment, s: MemorySettings, cpu_flags: list[str] | None = None,
                     cpu_arch: str = "x86_64") -> dict[str, MemoryBreakdown]:
    out = {"CPU": MemoryBreakdown("CPU", overhead=CPU_RUNTIME_OVERHEAD)}
    for g in a.gpus:
        out[g] = MemoryBreakdown(g, overhead=gpu_runtime_overhead(model.n_embd, s.n_ubatch))
    cpu_tensors: list[TensorRecord] = []
    for t in model.tensors:
        dev = a.tensor_device(t)
        # ggml-alloc starts each tensor of a weight buffer at a 32-byte boundary (a GGUF's data does too)
        out[dev].weights += -(-t.nbytes // TENSOR_ALIGNMENT) * TENSOR_ALIGNMENT
        if dev == "CPU":
            cpu_tensors.append(t)
            if cpu_flags is not None and repack_enabled(t, cpu_flags, cpu_arch):
                out["CPU"].repack += t.nbytes
    if model.ties_embeddings and a.output_device != "CPU":
        # no output.weight: llama.cpp loads a duplicate of token_embd on the output device
        out[a.output_device].weights += model.bytes_by_role.get("token_embedding", 0)
    for il in range(model.n_layers):
        out[a.layer_device[il]].kv += kv_layer_bytes(model, il, s.n_ctx, s.cache_type_k, s.cache_type_v,
                                                      s.swa_full, s.n_ubatch, s.n_parallel)
    used_gpus = [g for g in a.gpus if g in set(a.layer_device) or g == a.output_device]
    if used_gpus:
        # Op offload runs big-batch matmuls of RAM-resident experts on the GPU, yet the logged CUDA0
        # compute buffer did not grow with experts in RAM (H200: 358 MB with 0, 16 and 32 layers' experts
        # in RAM), so no weight-copy term is added.
        for g in used_gpus:
            out[g].compute = gpu_compute_buffer_bytes(model, s.n_ctx, s.n_ubatch, s.flash_attn,
                                                      with_output=(g == a.output_device),
                                                      quantized_kv=(s.cache_type_k, s.cache_type_v) != ("f16", "f16"))
        out["CPU"].compute = host_compute_bytes(model, s.n_ubatch)
        if "CPU" in a.layer_device or a.output_device == "CPU":
            out["CPU"].compute = max(out["CPU"].compute, compute_buffer_bytes(
                model, s.n_ctx, s.n_ubatch, s.flash_attn, with_output=a.output_device == "CPU"))
    else:
        out["CPU"].compute = compute_buffer_bytes(model, s.n_ctx, s.n_ubatch, s.flash_attn)
    for g in a.gpus:
        if g not in used_gpus:
            out[g].overhead = 0
    return out


TENSOR_ALIGNMENT = 32


# ---- the placement search ---------------------------------------------------------------------------
def llama_devices(n_layer_all: int, gpus: list[str], fractions: list[float], n_gpu_layers: int) -> list[str]:
    """llama.cpp's block -> device map for `-ngl n_gpu_layers` (llama_model::load_tensors): n_layer_all + 1
    slots, the last one the output head; i_gpu_start = n_layer_all + 1 - n_gpu_layers, so -ngl N puts the
    output head and the last N - 1 blocks on the GPUs (next-token blocks count as blocks there), split by
    cumulative tensor_split fractions."""
    start = max(n_layer_all + 1 - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_layer_all + 1) if gpus else 0
    total = sum(fractions) or 1.0
    cum, acc = [], 0.0
    for f in fractions or [1.0] * len(gpus):
        acc += f / (total if fractions else len(gpus))
        cum.append(acc)
    out = []
    for il in range(n_layer_all + 1):
        if il < start or il - start >= act:
            out.append("CPU")
            continue
        x = (il - start) / act
        gi = next((i for i, c in enumerate(cum) if x < c), len(gpus) - 1)
        out.append(gpus[gi])
    return out


def layer_split(n_layers: int, gpus: list[str], fractions: list[float], n_gpu_layers: int, n_nextn: int = 0) -> list[str]:
    """The device of each of the model's n_layers layers under llama.cpp's `-ngl n_gpu_layers`."""
    return llama_devices(n_layers + n_nextn, gpus, fractions, n_gpu_layers)[:n_layers]


@dataclass
class SearchResult:
    assignment: Assignment
    memory: dict[str, MemoryBreakdown]
    mode: str  # "cpu_only" | "all_gpu" | "experts_split" | "partial_layers"
    notes: list[str] = field(default_factory=list)


def _fits(mem: dict[str, MemoryBreakdown], budgets: dict[str, int]) -> bool:
    return all(mem[d].total <= budgets.get(d, 0) for d in mem if d != "CPU")


def place(model: ModelInfo, gpus: list[str], budgets: dict[str, int], fractions: list[float],
          s: MemorySettings, cpu_flags: list[str] | None = None, cpu_arch: str = "x86_64",
          experts_in_ram: str = LAST) -> SearchResult:
    """Place the model given GPU budgets (bytes a device may hold, runtime overhead included).
    The CPU budget is checked by the caller (everything that does not fit a GPU lands there).
    experts_in_ram: which layers' experts stay in RAM when not all fit, the FIRST layers (as llama.cpp's
    --n-cpu-moe) or the LAST (as llama.cpp's own fit)."""
    n = model.n_layers
    if not gpus:
        a = Assignment([], ["CPU"] * n, output_device="CPU", n_gpu_layers=0)
        return SearchResult(a, memory_by_device(model, a, s, cpu_flags, cpu_arch), "cpu_only")

    split = fractions if len(gpus) > 1 else None
    moe_layers = [l.index for l in model.layers if l.is_moe and l.expert_total > 0]
    all_cpu = {il: set(model.layers[il].expert_bytes) for il in moe_layers}

    def mem(a: Assignment) -> dict[str, MemoryBreakdown]:
        return memory_by_device(model, a, s, cpu_flags, cpu_arch)

    n_all = n + model.nextn_layers
    full = layer_split(n, gpus, fractions, n_all + 1, model.nextn_layers)
    a = Assignment(gpus, full, {}, gpus[-1], -1, split)
    m = mem(a)
    if _fits(m, budgets):
        return SearchResult(a, m, "all_gpu")

    # every layer on the GPUs, experts all on CPU: does the dense part fit?
    base = Assignment(gpus, full, {il: set(p) for il, p in all_cpu.items()}, gpus[-1], -1, split)
    m = mem(base)
    if _fits(m, budgets) and moe_layers:
        # bring experts back part by part, from the end of the model that stays on the GPU (the highest
        # layers when the FIRST stay in RAM); a device that could not take a part takes nothing further,
        # so the experts in RAM are one run of layers at the other end.
        # incremental: moving a part to its GPU adds its bytes there; the compute buffer's copy term
        # (largest CPU weight) is kept at its all-experts-on-CPU value, which can only over-estimate.
        free = {d: budgets.get(d, 0) - m[d].total for d in gpus}
        full_dev: set[str] = set()
        for il in sorted(moe_layers, reverse=experts_in_ram == FIRST):
            dev = full[il]
            if dev in full_dev:
                continue
            for part in [p for p in PART_ORDER if p in model.layers[il].expert_bytes]:
                nbytes = model.layers[il].expert_bytes[part]
                if nbytes <= free[dev]:
                    free[dev] -= nbytes
                    base.cpu_experts[il].discard(part)
                else:
                    full_dev.add(dev)
            if not base.cpu_experts[il]:
                del base.cpu_experts[il]
            if full_dev >= set(gpus):
                break
        return SearchResult(base, mem(base), "experts_split")

    # partial layer offload, as llama.cpp's -ngl k: the output head and the last k - 1 blocks
    # (non-expert tensors + KV) on GPUs, all experts on CPU
    for k in range(n_all, 0, -1):
        devs = llama_devices(n_all, gpus, fractions, k)
        a = Assignment(gpus, devs[:n], {il: set(p) for il, p in all_cpu.items()}, devs[n_all], k, split)
        m = mem(a)
        if _fits(m, budgets):
            return SearchResult(a, m, "partial_layers")
    a = Assignment(gpus, ["CPU"] * n, {}, "CPU", 0, None)
    return SearchResult(a, mem(a), "cpu_only", ["the GPU cannot hold even one layer"])


def experts_on_cpu_fraction(model: ModelInfo, a: Assignment) -> float:
    tot = model.routed_expert_bytes
    if not tot:
        return 0.0
    cpu = sum(t.nbytes for t in model.tensors if t.expert_part is not None and a.tensor_device(t) == "CPU")
    return cpu / tot


def hops_per_token(model: ModelInfo, a: Assignment) -> int:
    """GPU<->CPU crossings per token: walk the layers in order, a crossing whenever the device changes
    (a layer with CPU experts goes to the CPU and back)."""
    seq: list[str] = ["CPU"]  # the embedding lookup
    for il in range(model.n_layers):
        dev = a.layer_device[il]
        seq.append(dev)
        if dev != "CPU" and a.cpu_experts.get(il):
            seq += ["CPU", dev]
    seq.append(a.output_device)
    hops = sum(1 for x, y in zip(seq, seq[1:]) if x != y)
    return hops


def cpu_expert_map(model: ModelInfo, a: Assignment) -> dict[int, set[str]]:
    """layer -> parts on the CPU, normalised: whole layers as ALL_PARTS (what overrides.py expects)."""
    out: dict[int, set[str]] = {}
    for il in range(model.n_layers):
        layer = model.layers[il]
        if not layer.is_moe or not layer.expert_bytes:
            continue
        parts = set(layer.expert_bytes)
        if a.layer_device[il] == "CPU":
            continue  # the whole layer is on CPU anyway
        cpu = {p for p in parts if p in a.cpu_experts.get(il, set())}
        if cpu:
            out[il] = set(ALL_PARTS) if cpu >= parts else cpu
    return out
