"""Predicted decode and prompt tok/s for a placement.

Decode is memory-bound: per token each device reads its active bytes (dense tensors, n_used/n_expert of
its routed experts, the KV it holds at the given depth) at its bandwidth x an efficiency factor; each
GPU<->CPU crossing costs a fixed latency, and every token a fixed overhead (sampling, launches).
Prompt processing is compute-bound on the device running the matmuls; with CPU-resident experts llama.cpp
copies those weights over PCIe to the GPU once per ubatch, so time per ubatch >= cpu_bytes / pcie_bw.

The factors are defaults, not measurements: EfficiencyFactors can be replaced by those the tuner
measures on a rig (they are an input). tuning/predict_vs_measured.py records how far off they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from moetui.config.units import gib_fixed
from moetui.model.info import ModelInfo

# llama.cpp moves matmuls of CPU weights to the GPU only for batches of at least this many tokens
# (ggml-cuda: get_op_batch_size >= 32 for op offload).
OP_OFFLOAD_MIN_BATCH = 32
NO_THREAD_LIMIT_GBS = 1e9  # a cpu_thread_gbs that leaves only the RAM limit


@dataclass
class EfficiencyFactors:
    # gpu_bw, cpu_bw, cpu_thread_gbs, probe_of_theoretical, token_overhead_s and layer_overhead_s are fitted
    # together on the 18 measured decode speeds of tuning/reference.toml (published hybrid and CPU-only runs on
    # other rigs, this project's H100 and H200 leases at 8 and 16 threads): worst error 30%, median 12%,
    # leave-one-out worst 34% (tuning/fit_speed_factors.py; tuning/results/speed_factors.md). The previous
    # 0.45 / 0.4 / 1.3 ms with no thread term were off by up to 69% on the same set (8 threads on 16 cores).
    gpu_bw: float = 0.584  # fraction of the GPU's peak memory bandwidth decode reaches
    # CPU-resident weights stream at cpu_bw x the harmonic mean of two limits: the RAM read bandwidth (what
    # moetui's detect probe measures) and what the threads can consume (cpu_thread_gbs per thread, threads
    # capped at the physical cores: hyperthreads share one core's load/dequantise units). With few threads
    # llama.cpp's CPU matmuls are compute-bound and scale with threads; with many they saturate the memory.
    cpu_bw: float = 0.849
    cpu_thread_gbs: float = 6.55  # GB/s of weights one thread streams; NO_THREAD_LIMIT_GBS = none
    # What a read probe reaches of the channels x transfer-rate spec, for rigs whose RAM bandwidth is only
    # known from the spec (the probe did not run, or a published rig states DDR type and channels). The fit
    # ran into its upper bound (1.0): the three spec-only entries do not pin it down.
    probe_of_theoretical: float = 1.0
    # Per-ubatch copies of RAM-resident weights to the GPU, as a multiple of the PCIe link's rate if every
    # CPU-resident expert byte crossed once per ubatch. Fitted, not derived: on the H200 (PCIe 5 x16,
    # 54 GB/s pinned host->device measured) ubatches of 1024 and 2048 with 8.95 GB of experts in pinned
    # RAM took 0.10 and 0.17 s (llama-bench pp2048, tuning/results/speed_vs_fit/prep.json), which leaves
    # 0.047 s for the copies: 3x the link rate, so llama.cpp evidently moves less than all of them.
    pcie: float = 3.0
    # The same copies from pageable memory (mmap, the default load mode): the driver stages them through
    # a bounce buffer. 3.0 puts llama.cpp's mmap default at 2.2x the pinned time per 512-token ubatch, as
    # measured on the H200 at 12 GiB (2867 against 6056 tok/s, issue #17's table).
    pageable_copy_slowdown: float = 3.0
    hop_latency_s: float = 30e-6  # per GPU<->CPU crossing per token (sync + copy of the hidden state)
    # Fixed costs per token. The fit puts them per layer (kernel launches, thread-pool barriers, the
    # synchronisations of each layer) and leaves the per-token part (sampling, Python) at its floor; the
    # reference set has only three layer counts (24, 36, 48), so the split between the two is loosely pinned.
    token_overhead_s: float = 1.0e-4
    layer_overhead_s: float = 4.09e-5
    # usable FLOP/s per byte/s of GPU bandwidth for prompt matmuls: 24 puts the H100's measured prompt
    # speeds (all on the GPU; 23 and 30 expert layers in RAM) at +5% / -8% / -12% (60 was +173% on the first)
    gpu_flops_per_bw_byte: float = 24.0
    cpu_gflops_per_core: float = 25.0  # usable quantized-matmul GFLOP/s per physical core
    source: str = "defaults"  # "defaults" or what measured them (the tuner writes the rig/model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EfficiencyFactors":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "cpu_bw" in known and "cpu_thread_gbs" not in known:
            # a profile saved before the thread term: its cpu_bw was refit without one, so it keeps
            # predicting as it did (no thread limit, its RAM bandwidth taken as measured)
            known["cpu_thread_gbs"] = NO_THREAD_LIMIT_GBS
            known.setdefault("probe_of_theoretical", 1.0)
        return cls(**known)


@dataclass
class DeviceLoad:
    """What one device does per decoded token."""

    device: str
    bandwidth_gbs: float
    active_bytes: float = 0.0
    layers: int = 0

    @property
    def seconds(self) -> float:
        return self.active_bytes / (self.bandwidth_gbs * 1e9) if self.bandwidth_gbs > 0 else 0.0


@dataclass
class SpeedPrediction:
    decode_tps: float
    prompt_tps: float
    decode_seconds_by_device: dict[str, float] = field(default_factory=dict)
    hops_per_token: int = 0
    prompt_bound: str = ""  # "gpu compute", "pcie copies of CPU experts", "cpu compute"
    notes: list[str] = field(default_factory=list)


def bytes_per_param(model: ModelInfo) -> float:
    return model.total_bytes / model.n_params if model.n_params else 0.6


def cpu_decode_bandwidth_gbs(ram_bw_gbs: float, eff: EfficiencyFactors, cpu_cores: int, n_threads: int | None = None,
                             ram_bw_theoretical: bool = False) -> float:
    """GB/s at which decode streams CPU-resident weights: never lower with more threads or more RAM bandwidth."""
    ram = ram_bw_gbs * (eff.probe_of_theoretical if ram_bw_theoretical else 1.0)
    threads = max(1, min(n_threads or cpu_cores or 1, max(cpu_cores, 1)))
    compute = threads * eff.cpu_thread_gbs
    if ram <= 0:
        return 0.0
    return eff.cpu_bw / (1.0 / ram + 1.0 / compute)


def decode_bandwidth_gbs(dev: str, bandwidths_gbs: dict[str, float], eff: EfficiencyFactors, cpu_cores: int,
                         n_threads: int | None, ram_bw_theoretical: bool) -> float:
    if dev == "CPU":
        return cpu_decode_bandwidth_gbs(bandwidths_gbs.get("CPU", 0.0), eff, cpu_cores, n_threads, ram_bw_theoretical)
    return bandwidths_gbs.get(dev, 0.0) * eff.gpu_bw


def predict(model: ModelInfo, placement: list[tuple[str, str]], n_layers_by_device: dict[str, int],
            bandwidths_gbs: dict[str, float], cpu_cores: int, hops_per_token: int,
            pcie_gbs: float | None, n_ubatch: int, eff: EfficiencyFactors,
            kv_bytes_by_device: dict[str, float] | None = None, gpu_peak_bw_gbs: float | None = None,
            pinned: bool = False, n_threads: int | None = None,
            ram_bw_theoretical: bool = False) -> SpeedPrediction:
    """placement: (tensor name, device) for every tensor; bandwidths_gbs: peak GB/s per device;
    kv_bytes_by_device: KV bytes each device reads per decoded token (the context depth); pinned: the
    RAM-resident weights are in pinned host buffers (load mode none), so the GPU copies them at full rate;
    n_threads: llama.cpp's decode threads (None: one per physical core, llama.cpp's default);
    ram_bw_theoretical: bandwidths_gbs["CPU"] is the channels x rate spec, not a probe reading."""
    frac = model.n_expert_used / model.n_expert if model.n_expert else 1.0
    by_name = {t.name: t for t in model.tensors}
    loads: dict[str, DeviceLoad] = {}
    total_by_dev: dict[str, float] = {}
    cpu_expert_bytes = 0.0
    for name, dev in placement:
        t = by_name.get(name)
        if t is None:
            continue
        if name.startswith("token_embd.") and not model.ties_embeddings:
            active = t.nbytes / max(model.n_vocab, 1)  # one row per token
        elif t.expert_part is not None:
            active = t.nbytes * frac
        else:
            active = t.nbytes
        load = loads.setdefault(dev, DeviceLoad(dev, decode_bandwidth_gbs(dev, bandwidths_gbs, eff, cpu_cores, n_threads,
                                                                         ram_bw_theoretical)))
        load.active_bytes += active
        total_by_dev[dev] = total_by_dev.get(dev, 0.0) + t.nbytes
        if dev == "CPU" and not name.startswith("token_embd.") and len(t.shape) >= 2:
            cpu_expert_bytes += t.nbytes
    for dev, kvb in (kv_bytes_by_device or {}).items():
        eff_bw = decode_bandwidth_gbs(dev, bandwidths_gbs, eff, cpu_cores, n_threads, ram_bw_theoretical)
        loads.setdefault(dev, DeviceLoad(dev, eff_bw)).active_bytes += kvb
    secs = {d: l.seconds for d, l in loads.items()}
    t_token = sum(secs.values()) + hops_per_token * eff.hop_latency_s + eff.token_overhead_s \
        + model.n_layers * eff.layer_overhead_s
    decode = 1.0 / t_token if t_token > 0 else 0.0

    # prompt: one ubatch of n_ubatch tokens
    gpus = [d for d in loads if d != "CPU"]
    flops_per_token = 2.0 * model.active_bytes_per_token / bytes_per_param(model)
    notes: list[str] = []
    if gpus and n_ubatch >= OP_OFFLOAD_MIN_BATCH:
        peak = gpu_peak_bw_gbs or max(bandwidths_gbs.get(d, 0.0) for d in gpus)
        gpu_flops = peak * 1e9 * eff.gpu_flops_per_bw_byte
        t_compute = n_ubatch * flops_per_token / gpu_flops
        t_read = sum(total_by_dev.get(d, 0.0) for d in gpus) / (peak * 1e9 * eff.gpu_bw)
        t_pcie = cpu_expert_bytes / (pcie_gbs * 1e9 * eff.pcie) if (cpu_expert_bytes and pcie_gbs) else 0.0
        if not pinned:
            t_pcie *= eff.pageable_copy_slowdown
        # plus one graph launch per ubatch: without it a tiny model's predicted prompt speed is unbounded
        t_ub = max(t_compute, t_read) + t_pcie + eff.token_overhead_s + model.n_layers * eff.layer_overhead_s
        bound = "pcie copies of CPU experts" if t_pcie > max(t_compute, t_read) else "gpu compute"
        if t_pcie:
            notes.append(f"prompt: {gib_fixed(cpu_expert_bytes)} of RAM-resident weights are copied to the GPU "
                         f"per ubatch of {n_ubatch} tokens"
                         + ("" if pinned else ", from pageable memory (about 3x slower than pinned)")
                         + "; a larger -ub amortises the copies")
    else:
        cpu_flops = max(cpu_cores, 1) * eff.cpu_gflops_per_core * 1e9
        t_ub = n_ubatch * flops_per_token / cpu_flops + eff.token_overhead_s + model.n_layers * eff.layer_overhead_s
        bound = "cpu compute"
    prompt = n_ubatch / t_ub if t_ub > 0 else 0.0
    return SpeedPrediction(decode, prompt, secs, hops_per_token, bound, notes)
