"""Plain-language lines for every decision the planner makes (shown by the TUI and `moetui plan`)."""

from __future__ import annotations

from moetui.model.info import ModelInfo

from moetui.config.units import GIB, gib_fixed as gb  # noqa: F401  (bytes in the plan's words: GiB, two decimals)


# a plan's placement mode, in words (Plan.mode is for code and JSON)
MODE_WORDS = {"cpu_only": "CPU only", "all_gpu": "all on GPU", "experts_split": "experts split between GPU and RAM",
              "partial_layers": "some layers on GPU"}


def mode_words(mode: str) -> str:
    """"experts_split" -> "experts split between GPU and RAM"."""
    return MODE_WORDS.get(mode, mode.replace("_", " "))


def mode_line(mode: str, model: ModelInfo, n_gpu_layers: int, cpu_expert_frac: float, n_cpu_moe: int | None,
              gpu_names: list[str], experts_in_ram: str = "first") -> str:
    if mode == "cpu_only":
        if gpu_names:  # a GPU the plan may use, too small for even one layer
            return f"{' + '.join(gpu_names)} cannot hold even one layer: everything runs on the CPU, in RAM"
        return "everything runs on the CPU: the weights and the KV cache in RAM"
    gpus = " + ".join(gpu_names)
    if mode == "all_gpu":
        return f"the whole model fits on {gpus}: every layer and every expert on the GPU (-ngl all)"
    if mode == "experts_split":
        how = f"exactly --n-cpu-moe {n_cpu_moe}" if n_cpu_moe is not None else "tensor overrides (-ot), the boundary layer split by part"
        which = ("lowest layers first" if experts_in_ram == "first" else
                 "highest layers first, as llama.cpp's fit does (prompts ran 9-14% faster that way than with the "
                 "lowest layers in RAM on an H200)")
        return (f"non-expert weights and the KV cache on {gpus}; {cpu_expert_frac:.0%} of the routed-expert "
                f"bytes in RAM, {which} ({how})")
    return (f"even the non-expert weights do not fit on {gpus}: partial layer offload, the last {n_gpu_layers} of "
            f"{model.n_layers} layers on the GPU and every routed expert in RAM — expect CPU-bound speed")


def budget_line(device: str, total: int, budget: int, detail: str) -> str:
    return f"{'RAM' if device == 'CPU' else device}: {gb(total)} planned of a {gb(budget)} budget ({detail})"


# what sets the prompt's pace (SpeedPrediction.prompt_bound), in words
PROMPT_BOUNDS = {
    "cpu compute": "the CPU's arithmetic sets its pace",
    "cpu compute + network": "the CPU's arithmetic and the network set its pace",
    "gpu compute": "the GPU's arithmetic sets its pace",
    "pcie copies of CPU experts": "copying the experts held in RAM to the GPU sets its pace",
}


def memory_of(device: str) -> str:
    """Where a device's weights are, for a person: "CPU" -> "RAM", "CUDA0" -> "CUDA0's VRAM"."""
    if device == "CPU":
        return "RAM"
    if device.startswith(("CUDA", "ROCm", "Vulkan", "SYCL")):
        return f"{device}'s VRAM"
    if device.startswith("Metal"):
        return "unified memory (Metal)"
    return f"{device}'s memory"


def speed_line(decode: float, prompt: float, bound: str, slowest: str, efficiency_source: str = "defaults") -> str:
    """efficiency_source: EfficiencyFactors.source, "defaults" or the tune that measured them."""
    pace = PROMPT_BOUNDS.get(bound, bound)
    basis = ("default efficiency factors: `moetui tune` measures the real speed" if efficiency_source == "defaults"
             else f"efficiency factors a tune measured on this rig ({efficiency_source})")
    return (f"predicted ~{decode:.1f} tok/s decode (most of each token's time goes to reading the weights in "
            f"{memory_of(slowest)}), ~{prompt:.0f} tok/s prompt ({pace}); a prediction from bandwidth and {basis}")
