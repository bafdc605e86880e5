"""Plain-language lines for every decision the planner makes (shown by the TUI and `moetui plan`)."""

from __future__ import annotations

from moetui.model.info import ModelInfo

GIB = 1024**3


def gb(n: float) -> str:
    """Bytes in GiB, the unit llama.cpp's log and every screen of the TUI use."""
    return f"{n / GIB:.2f} GiB"


def mode_line(mode: str, model: ModelInfo, n_gpu_layers: int, cpu_expert_frac: float, n_cpu_moe: int | None,
              gpu_names: list[str]) -> str:
    if mode == "cpu_only":
        return "everything runs on the CPU (n_gpu_layers 0)"
    gpus = " + ".join(gpu_names)
    if mode == "all_gpu":
        return f"the whole model fits on {gpus}: every layer and every expert on the GPU (-ngl all)"
    if mode == "experts_split":
        how = f"exactly --n-cpu-moe {n_cpu_moe}" if n_cpu_moe is not None else "tensor overrides (-ot), the boundary layer split by part"
        return (f"non-expert weights and the KV cache on {gpus}; {cpu_expert_frac:.0%} of the routed-expert "
                f"bytes in RAM, lowest layers first ({how})")
    return (f"even the non-expert weights do not fit on {gpus}: partial layer offload, the last {n_gpu_layers} of "
            f"{model.n_layers} layers on the GPU and every routed expert in RAM — expect CPU-bound speed")


def budget_line(device: str, total: int, budget: int, detail: str) -> str:
    return f"{device}: {gb(total)} planned of a {gb(budget)} budget ({detail})"


def speed_line(decode: float, prompt: float, bound: str, slowest: str) -> str:
    return (f"predicted ~{decode:.1f} tok/s decode (most time reading {slowest}), ~{prompt:.0f} tok/s prompt "
            f"({bound}); a prediction from bandwidth and default efficiency factors, `moetui tune` measures")
