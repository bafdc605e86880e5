"""Bytes on each device for a model + placement + context: weights, KV cache, compute buffers, overhead.

Every figure mirrors what llama.cpp allocates (see llama_log.py for the log lines it is checked against).
Calibration (tuning/calibrate_memory.py -> tuning/results/memory_calibration.json; CPU-only build of
llama-cpp-python 0.3.36, tiny Q4_K_M proxies of qwen3-30b-a3b, gpt-oss-20b, deepseek-v2-lite, qwen3-0.6b,
mixtral-8x7b; n_ctx 512..8192, n_ubatch 128/512, flash attention on/off, KV f16/q8_0/q4_0):
  * model weights: sum of tensor bytes == "CPU_Mapped model buffer size" within 0.2%;
  * KV cache: exact up to the log's 0.01 MiB rounding, SWA layers at full size (swa_full, what
    llama-cpp-python asks for);
  * compute buffer: the formula below, error reported by tests/test_sizing_memory.py and in
    tuning/results/memory_calibration.md.
Per architecture at full size against llama.cpp's own no_alloc accounting (tuning/arch_memory.py ->
tuning/results/arch_memory.md: qwen3moe, qwen35moe, qwen3next, glm4moe, deepseek2 MLA, minimax-m2,
gpt-oss, llama4, ...): weights and KV + recurrent state exact (next-token blocks not counted, recurrent
layers hold a per-sequence state instead of KV); compute within about -12%..+14%. The plan a user sees is
checked by that dry run where it can run here (moetui.runtime.dry_run, moetui.sizing.dry_check).
"""

from __future__ import annotations

from dataclasses import dataclass

from moetui.config.units import GIB, MIB  # noqa: F401  (re-exported: the sizing core's byte units)
from moetui.model.info import ModelInfo, TensorRecord, kv_bytes_per_element

# llama.cpp pads the KV cache to 256 cells (llama_context: n_ctx = GGML_PAD(n_ctx, 256) for the cache).
KV_PAD = 256

# ---- fixed runtime overhead ---------------------------------------------------------------------------
# VRAM a CUDA process holds beyond llama.cpp's logged buffers (CUDA context, cuBLAS workspaces, graph
# bookkeeping): NVML's per-process figure minus the logged CUDA0 buffers, measured on an H200 (driver
# 580, CUDA 13) at four placements: 521.5-522.8 MiB (tuning/results/gpu/prep.json).
GPU_RUNTIME_OVERHEAD = 523 * MIB
# ... and what it adds on the first full batch and then keeps (kernels loaded lazily, cuBLAS, ggml's CUDA
# pool of matmul scratch that never shrinks): NVML after load and after one prompt batch, H200, fresh
# processes, Qwen3-30B-A3B proxy (n_embd 2048): +0.186 GiB at ubatch 512, +0.205 GiB at 1024
# (tuning/results/speed_vs_fit_memory/). The tuner's headroom check reads NVML after a bench, so a plan
# that left this out failed its own margin by 0.18 GiB.
GPU_RUN_GROWTH = 176 * MIB
GPU_RUN_GROWTH_PER_TOKEN_EMBD = 20  # bytes per ubatch token per n_embd (40 KiB a token at n_embd 2048)


def gpu_runtime_overhead(n_embd: int, n_ubatch: int) -> int:
    """VRAM a running CUDA process holds beyond llama.cpp's logged buffers once it has decoded a prompt."""
    return GPU_RUNTIME_OVERHEAD + GPU_RUN_GROWTH + GPU_RUN_GROWTH_PER_TOKEN_EMBD * n_embd * n_ubatch
# The worker process itself (Python + llama.cpp code + tokenizer tables): an estimate, not measured.
CPU_RUNTIME_OVERHEAD = 200 * MIB

# Tensor types whose CPU-resident copies llama.cpp repacks into a CPU_REPACK buffer (ggml-cpu/repack.cpp,
# ggml_repack_get_optimal_repack_type), by the CPU feature that enables it, for x86 / ARM.
_REPACK_X86 = {"Q4_0": "AVX2", "Q4_K": "AVX2", "IQ4_NL": "AVX2", "MXFP4": "AVX2", "Q2_K": "AVX512"}
_REPACK_ARM = {"Q4_0": "MATMUL_INT8", "Q4_K": "DOTPROD", "Q5_K": "DOTPROD", "Q6_K": "DOTPROD",
               "IQ4_NL": "DOTPROD", "MXFP4": "DOTPROD", "Q8_0": "DOTPROD"}


@dataclass
class MemoryBreakdown:
    """Bytes on one device ("CPU", "CUDA0", ...)."""

    device: str
    weights: int = 0
    kv: int = 0
    compute: int = 0
    overhead: int = 0
    # CPU only: second copies of weights llama.cpp repacks for faster CPU matmuls (CPU_REPACK). With
    # mmap their mapped pages become reclaimable page cache, so they are reported, not added to total.
    repack: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.overhead

    def add(self, other: "MemoryBreakdown") -> None:
        self.weights += other.weights
        self.kv += other.kv
        self.compute += other.compute
        self.overhead += other.overhead
        self.repack += other.repack


def padded_ctx(n_ctx: int) -> int:
    return max(KV_PAD, -(-n_ctx // KV_PAD) * KV_PAD)


def kv_layer_bytes(model: ModelInfo, il: int, n_ctx: int, cache_type_k: str = "f16", cache_type_v: str = "f16",
                   swa_full: bool = True, n_ubatch: int = 512, n_parallel: int = 1) -> int:
    """KV bytes of layer il. n_ctx is llama.cpp's total context (all parallel sequences share it).
    A recurrent layer (hybrid models) holds no KV but its recurrent state, f32, one per sequence
    (llama.cpp's RS buffer, on the layer's device like the KV)."""
    if il in model.recurrent_layers:
        return model.recurrent_state_bytes(n_parallel, [il])
    cells = padded_ctx(n_ctx)
    if not swa_full and model.sliding_window and il in model.swa_layers:
        cells = min(cells, padded_ctx(model.sliding_window * n_parallel + n_ubatch))
    k, v = model.kv_elements_per_token(il)
    return int(cells * (k * kv_bytes_per_element(cache_type_k) + v * kv_bytes_per_element(cache_type_v)))


def kv_cache_bytes(model: ModelInfo, n_ctx: int, cache_type_k: str = "f16", cache_type_v: str = "f16",
                   swa_full: bool = True, layers: list[int] | None = None, n_ubatch: int = 512,
                   n_parallel: int = 1) -> int:
    idx = range(model.n_layers) if layers is None else layers
    return sum(kv_layer_bytes(model, il, n_ctx, cache_type_k, cache_type_v, swa_full, n_ubatch, n_parallel) for il in idx)


# ---- compute buffer ---------------------------------------------------------------------------------
# ggml-alloc reuses memory, so the buffer is the graph's inputs (alive throughout) plus the largest
# "phase" of live intermediates, not a sum of all tensors. The phases, per ubatch token:
#   attention (no flash attn): KQ scores n_ctx*n_head f32 + q/k/v/residual activations;
#   output:  logits n_vocab f32 + hidden states (worst case reserve: every token is an output);
#   FFN:     gate/up/activation of the routed (n_expert_used x n_ff_exp) or dense FFN, f32.
# Inputs: the KQ mask n_ctx f32 per token, f16 with flash attention; one mask per attention kind (SWA
# models have two). The coefficients in units of n_embd were fitted on the calibration runs.
ATTN_OTHER_EMBD = 3  # residual + norm + attention output, f32, per token (x n_embd)
OUTPUT_OTHER_EMBD_MOE = 2  # hidden state copies alive with the logits, MoE graphs (x n_embd)
OUTPUT_OTHER_EMBD_DENSE = 1
FFN_LIVE = 2  # gate and up (the activated product reuses one of them)
# Routed experts on the CPU: gate, up, their product and the weighted down outputs of every used expert
# live together; llama.cpp's dry run of Mixtral-8x7B (the FFN phase is its peak) holds 3.5 widths.
FFN_LIVE_ROUTED = 3.5
# MLA (deepseek2) attention phase, per token, f32: the absorbed queries, the latent attention output and
# their per-head decompression (x n_head x (kv_lora + rope)), plus the projections around them
# (x n_embd). Fitted on llama.cpp's dry runs of full-size DeepSeek-V3.1 and DeepSeek-V2-Lite (CPU,
# ubatch 512, 32K, no flash attention): +0.1% on V3 at 4K with flash attention, where the old
# per-head formula said +83.5% (tuning/results/arch_memory.md).
MLA_HEADS_LIVE = 1.32
MLA_EMBD_LIVE = 15.6


def compute_buffer_bytes(model: ModelInfo, n_ctx: int, n_ubatch: int, flash_attn: bool,
                         with_output: bool = True) -> int:
    """Compute buffer of a device that runs the whole graph at this context and ubatch (llama.cpp's
    worst-case reserve: n_tokens = n_ubatch, every token an output)."""
    ctx = padded_ctx(n_ctx)
    ub = n_ubatch
    n_masks = 2 if (model.swa_layers and len(model.swa_layers) < model.n_layers) else 1
    mask = n_masks * ctx * ub * (2 if flash_attn else 4)
    nkv = max(model.n_head_kv) if model.n_head_kv else model.n_head
    kq = 0 if flash_attn else ctx * ub * model.n_head * 4
    if model.is_mla:
        attn = ub * 4 * (MLA_HEADS_LIVE * model.n_head * model.head_dim_k + MLA_EMBD_LIVE * model.n_embd) + kq
    else:
        qkv = model.n_head * model.head_dim_k * 2 + nkv * (model.head_dim_k + model.head_dim_v)
        attn = ub * 4 * (ATTN_OTHER_EMBD * model.n_embd + qkv) + kq
    other = OUTPUT_OTHER_EMBD_MOE if model.is_moe else OUTPUT_OTHER_EMBD_DENSE
    out = ub * 4 * ((model.n_vocab if with_output else 0) + other * model.n_embd)
    ffn_width = max(FFN_LIVE_ROUTED * model.n_expert_used * model.expert_ffn,
                    FFN_LIVE * model.dense_ffn if _has_dense_ffn(model) else 0)
    ffn = ub * 4 * (ffn_width + model.n_embd * 2)
    return int(mask + max(attn, ffn, out))


# A GPU running a MoE graph held more than the formula above at short contexts: an H200 (CUDA 13, FA on,
# Qwen3-30B-A3B Q4_K_M proxy, 24 layers' experts in RAM, tuning/results/speed_vs_fit/prep.json) logged a
# CUDA0 compute buffer of exactly 699,475 bytes per ubatch token at 4K and 8K context for ubatch 512, 2048
# and 4096 (linear in the ubatch), 8-10% above the formula, while at 32K it logged 615,936 (logits + one
# hidden state, the formula's output term). The floor: logits + hidden state + 3.75 routed-FFN widths of
# f32 per token, +1.2% over the 8K measurements; at 32K it over-predicts the compute buffer by 15%, the
# whole GPU by 1.3%. A plan must never predict less than the GPU really holds: a floor, not a fit.
MOE_GPU_FFN_FLOOR = 3.75


def gpu_compute_buffer_bytes(model: ModelInfo, n_ctx: int, n_ubatch: int, flash_attn: bool,
                             with_output: bool = True, quantized_kv: bool = False) -> int:
    """compute_buffer_bytes for a GPU, with the floor measured on CUDA for MoE graphs. quantized_kv: a
    q8_0/q4_0 cache, which CUDA's flash attention converts to f16 for batches, one layer's K and V at a
    time, in scratch space after the attention output (ggml-cuda/fattn-common.cuh, f16_extra_data)."""
    base = compute_buffer_bytes(model, n_ctx, n_ubatch, flash_attn, with_output)
    if quantized_kv and flash_attn:
        k, v = max((model.kv_elements_per_token(il) for il in range(model.n_layers)), default=(0, 0))
        attn_phase = compute_buffer_bytes(model, n_ctx, n_ubatch, flash_attn, with_output=False)
        base = max(base, attn_phase + padded_ctx(n_ctx) * (k + v) * 2)
    if not (model.is_moe and with_output):
        return base
    floor = n_ubatch * 4 * (model.n_vocab + model.n_embd
                            + MOE_GPU_FFN_FLOOR * model.n_expert_used * model.expert_ffn)
    return int(max(base, floor))


def _has_dense_ffn(model: ModelInfo) -> bool:
    return not model.is_moe or model.leading_dense_layers > 0 or model.bytes_by_role.get("dense_ffn", 0) > 0


def host_compute_bytes(model: ModelInfo, n_ubatch: int) -> int:
    """The CPU-side compute buffer when a GPU runs the graph: inputs and the CPU ops' activations
    (embedding rows, CPU expert matmul outputs). Not calibrated (no GPU here); small next to weights."""
    ffn_width = max(model.n_expert_used * model.expert_ffn, model.dense_ffn)
    return int(n_ubatch * 4 * (4 * model.n_embd + FFN_LIVE * ffn_width))


# ---- weights ----------------------------------------------------------------------------------------
def repack_enabled(t: TensorRecord, cpu_flags: list[str] | set[str], cpu_arch: str = "x86_64") -> bool:
    """Whether llama.cpp copies this CPU-resident tensor into CPU_REPACK. Only matmul weights whose row
    count is a multiple of 8; never the token embedding (a row lookup)."""
    if t.name.startswith("token_embd.") or len(t.shape) < 2 or t.shape[1] % 8:
        return False
    flags = {f.upper() for f in cpu_flags}
    if "AVX512F" in flags:
        flags.add("AVX512")
    table = _REPACK_ARM if cpu_arch.lower() in ("aarch64", "arm64") else _REPACK_X86
    need = table.get(t.type.upper())
    return need is not None and need in flags
