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

from moetui.model.info import ModelInfo

# llama.cpp moves matmuls of CPU weights to the GPU only for batches of at least this many tokens
# (ggml-cuda: get_op_batch_size >= 32 for op offload).
OP_OFFLOAD_MIN_BATCH = 32


@dataclass
class EfficiencyFactors:
    # gpu_bw, cpu_bw and token_overhead_s fit six measured decode speeds within +-14%: three on an H100
    # with capped VRAM (all on the GPU, 23 and 30 expert layers in RAM; tuning/results/gpu_bench.md) and
    # the three published figures in tuning/reference.toml (tuning/fit_speed_factors.py, results in
    # tuning/results/speed_factors.md). The earlier 0.5 / 0.6 / 1.0 ms were 27-48% high on the H100.
    gpu_bw: float = 0.45  # fraction of the GPU's peak memory bandwidth decode reaches
    cpu_bw: float = 0.4  # fraction of the measured/typical RAM bandwidth
    pcie: float = 0.8  # fraction of the PCIe link for weight copies
    hop_latency_s: float = 30e-6  # per GPU<->CPU crossing per token (sync + copy of the hidden state)
    token_overhead_s: float = 1.3e-3  # per token: sampling, graph launch, Python
    layer_overhead_s: float = 8e-6  # per layer per token: kernel launches / thread barriers
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


def predict(model: ModelInfo, placement: list[tuple[str, str]], n_layers_by_device: dict[str, int],
            bandwidths_gbs: dict[str, float], cpu_cores: int, hops_per_token: int,
            pcie_gbs: float | None, n_ubatch: int, eff: EfficiencyFactors,
            kv_bytes_by_device: dict[str, float] | None = None, gpu_peak_bw_gbs: float | None = None) -> SpeedPrediction:
    """placement: (tensor name, device) for every tensor; bandwidths_gbs: peak GB/s per device."""
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
        eff_bw = bandwidths_gbs.get(dev, 0.0) * (eff.cpu_bw if dev == "CPU" else eff.gpu_bw)
        load = loads.setdefault(dev, DeviceLoad(dev, eff_bw))
        load.active_bytes += active
        total_by_dev[dev] = total_by_dev.get(dev, 0.0) + t.nbytes
        if dev == "CPU" and not name.startswith("token_embd.") and len(t.shape) >= 2:
            cpu_expert_bytes += t.nbytes
    for dev, kvb in (kv_bytes_by_device or {}).items():
        eff_bw = bandwidths_gbs.get(dev, 0.0) * (eff.cpu_bw if dev == "CPU" else eff.gpu_bw)
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
        # plus one graph launch per ubatch: without it a tiny model's predicted prompt speed is unbounded
        t_ub = max(t_compute, t_read) + t_pcie + eff.token_overhead_s + model.n_layers * eff.layer_overhead_s
        bound = "pcie copies of CPU experts" if t_pcie > max(t_compute, t_read) else "gpu compute"
        if t_pcie:
            notes.append(f"prompt: {cpu_expert_bytes / 1024**3:.2f} GiB of CPU weights cross PCIe once per ubatch "
                         f"of {n_ubatch} tokens; a larger -ub amortises it")
    else:
        cpu_flops = max(cpu_cores, 1) * eff.cpu_gflops_per_core * 1e9
        t_ub = n_ubatch * flops_per_token / cpu_flops + eff.token_overhead_s + model.n_layers * eff.layer_overhead_s
        bound = "cpu compute"
    prompt = n_ubatch / t_ub if t_ub > 0 else 0.0
    return SpeedPrediction(decode, prompt, secs, hops_per_token, bound, notes)
