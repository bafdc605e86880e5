"""Tuner probes in words, for the Tune and Best screens and the probe table: what a probe changed and what
it measured (median ± spread, seconds per turn)."""

from __future__ import annotations

from typing import Any

from moetui.tuner.probe import Probe, short_label


def _change_words(key: str, value: Any) -> str:
    words = {
        "n_cpu_moe": lambda v: f"experts of {v} layers in RAM",
        "experts_in_ram_last": lambda v: f"experts of the last {v} layers in RAM",
        "n_threads": lambda v: f"{v} thread{'s' if v != 1 else ''}",
        "n_threads_batch": lambda v: f"{v} prompt thread{'s' if v != 1 else ''}",
        "n_ubatch": lambda v: f"micro-batch {v}",
        "n_batch": lambda v: f"batch {v}",
        "flash_attn": lambda v: f"flash attention {v}",
        "cache_type": lambda v: f"KV cache {v}",
        "load_mode": lambda v: f"load by {v}",
        "draft_max": lambda v: f"draft up to {v} tokens",
        "draft": lambda v: f"draft {v}",
        "n_gpu_layers": lambda v: "all layers on GPU" if v is not None and int(v) < 0 else f"{v} layers on GPU",
        "overrides": lambda v: f"{len(v) if isinstance(v, (list, tuple)) else v} tensor overrides",
        "boundary": lambda v: f"GPU split at layer {v}",
    }
    fn = words.get(key)
    return fn(value) if fn else f"{key.replace('_', ' ')} {value}"


def probe_name(probe: Probe) -> str:
    """A probe in words: 'the plan', '12 threads, micro-batch 2048 (final)', 'llama.cpp defaults'."""
    short = short_label(probe.changes)
    if not probe.label.startswith(short):
        return probe.label  # a name the tuner gave it ("llama.cpp defaults")
    suffix = probe.label[len(short):]
    body = "the plan" if not probe.changes else ", ".join(_change_words(k, v) for k, v in probe.changes.items())
    return body + suffix


def _median_spread(median: float | None, stdev: float | None, unit: str, digits: int) -> str:
    if median is None:
        return "-"
    spread = f" ± {stdev:.{digits}f}" if stdev else ""
    return f"{median:.{digits}f}{spread} {unit}"


def probe_figures(probe: Probe) -> str:
    """'decode 41.2 ± 1.3 tok/s, prompt 980 ± 20 tok/s' (median ± standard deviation of the repetitions)."""
    bits = []
    if getattr(probe, "turn_s", None) is not None:  # the objective: seconds per turn of the workload
        bits.append(f"{probe.turn_s:.2f} s/turn")
    b = probe.bench
    if b is not None:
        if b.tg_median is not None:
            bits.append("decode " + _median_spread(b.tg_median, b.tg_stdev, "tok/s", 1))
        if b.pp_median is not None:
            bits.append("prompt " + _median_spread(b.pp_median, b.pp_stdev, "tok/s", 0))
    elif probe.score is not None:
        bits.append(f"score {probe.score:.1f}")
    return ", ".join(bits)


def describe_probe(probe: Probe) -> str:
    figures = probe_figures(probe)
    return f"{probe_name(probe)}: {figures}" if figures else probe_name(probe)
