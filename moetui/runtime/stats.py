"""What a loaded model costs and how fast it runs: figures parsed from llama.cpp's load log (the sizing
core calibrates its predictions against them) and the live figures a worker reports while it generates.

llama.cpp is the ground truth for memory: it prints every buffer it allocates ("CUDA0 model buffer size =
... MiB") and every tensor a buffer override moved ("tensor blk.2.ffn_up_exps.weight (...) buffer type
overridden to CPU"). Parsing those lines is more exact than any prediction and needs no GPU API.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024

# "load_tensors:   CPU_Mapped model buffer size =     4.81 MiB", "llama_kv_cache:  CUDA0 KV buffer size = ..."
_BUFFER = re.compile(
    r"^\s*(?P<who>[~\w]+):\s+(?P<buf>[\w\-]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB",
    re.MULTILINE,
)
# "tensor blk.2.ffn_up_exps.weight (0 MiB q4_K) buffer type overridden to CPU_REPACK"
_OVERRIDDEN = re.compile(r"^tensor (?P<name>\S+) \((?P<desc>[^)]*)\) buffer type overridden to (?P<buft>\S+)", re.MULTILINE)
# "load_tensors: layer   3 assigned to device CUDA0, is_swa = 0"
_LAYER_DEV = re.compile(r"layer\s+(?P<il>\d+) assigned to device (?P<dev>[^,\s]+)", re.MULTILINE)
# "create_tensor: loading tensor blk.0.ffn_up_exps.weight"
_CREATE = re.compile(r"loading tensor (?P<name>blk\.(?P<il>\d+)\.\S+)", re.MULTILINE)
_EXPS = re.compile(r"_(ch|)exps\b")


def is_host_buffer(name: str) -> bool:
    """Buffers in system RAM: CPU, CPU_Mapped, CPU_REPACK, CUDA_Host (pinned RAM), ..."""
    return name.upper().startswith("CPU") or name.endswith("_Host")


def buffer_device(name: str) -> str:
    """The device a buffer lives on: "CPU" for host buffers, else the GPU's name ("CUDA0_Split" -> "CUDA0")."""
    if is_host_buffer(name):
        return "CPU"
    return name.split("_", 1)[0]


@dataclass
class BufferSizes:
    """Bytes llama.cpp allocated, by buffer name ("CPU_Mapped", "CPU_REPACK", "CUDA0", ...), as printed in
    its load log. Note that with mmap the CPU_Mapped buffer spans the mapped file range, and repacked
    tensors (CPU_REPACK) are copies, so on a CPU-only load model bytes can exceed the file size."""

    model: dict[str, int] = field(default_factory=dict)
    kv: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    output: dict[str, int] = field(default_factory=dict)
    recurrent: dict[str, int] = field(default_factory=dict)
    # expert tensors (ffn_*_exps) placed in system RAM vs on a GPU, from the override and layer lines
    experts_ram: int = 0
    experts_vram: int = 0
    experts_by_buffer: dict[str, int] = field(default_factory=dict)  # buffer type -> expert tensors
    overridden: dict[str, str] = field(default_factory=dict)  # tensor name -> buffer type

    def weights_by_device(self) -> dict[str, int]:
        return _by_device(self.model)

    def kv_by_device(self) -> dict[str, int]:
        return _by_device(self.kv)

    def compute_by_device(self) -> dict[str, int]:
        return _by_device(self.compute)

    def total_by_device(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in (self.model, self.kv, self.compute, self.output, self.recurrent):
            for dev, n in _by_device(part).items():
                out[dev] = out.get(dev, 0) + n
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": dict(self.model), "kv": dict(self.kv), "compute": dict(self.compute),
            "output": dict(self.output), "recurrent": dict(self.recurrent),
            "experts_ram": self.experts_ram, "experts_vram": self.experts_vram,
            "experts_by_buffer": dict(self.experts_by_buffer), "overridden": dict(self.overridden),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BufferSizes":
        return cls(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()})


def _by_device(sizes: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, n in sizes.items():
        dev = buffer_device(name)
        out[dev] = out.get(dev, 0) + n
    return out


def parse_load_log(text: str) -> BufferSizes:
    """Parse llama.cpp's log of one model load (and context creation) into BufferSizes. Lines of the same
    buffer and kind are summed (an iSWA model prints two KV caches). Expert placement needs the debug-level
    "loading tensor" / "assigned to device" lines, which a verbose llama-cpp-python load prints."""
    sizes = BufferSizes()
    kinds = {"model": sizes.model, "KV": sizes.kv, "compute": sizes.compute, "output": sizes.output, "RS": sizes.recurrent}
    for m in _BUFFER.finditer(text):
        if m.group("who").startswith("~"):
            continue  # the destructor's "compute buffer size is ..." echo
        target = kinds[m.group("kind")]
        target[m.group("buf")] = target.get(m.group("buf"), 0) + int(round(float(m.group("mib")) * MIB))

    for m in _OVERRIDDEN.finditer(text):
        sizes.overridden[m.group("name")] = m.group("buft")
    layer_dev = {int(m.group("il")): m.group("dev") for m in _LAYER_DEV.finditer(text)}
    seen: set[str] = set()
    for m in _CREATE.finditer(text):
        name = m.group("name")
        if name in seen or not _EXPS.search(name) or not name.endswith(".weight"):
            continue
        seen.add(name)
        buft = sizes.overridden.get(name) or layer_dev.get(int(m.group("il")), "CPU")
        sizes.experts_by_buffer[buft] = sizes.experts_by_buffer.get(buft, 0) + 1
        if is_host_buffer(buft):
            sizes.experts_ram += 1
        else:
            sizes.experts_vram += 1
    if not seen:  # no debug lines: count what the override lines alone say
        for name, buft in sizes.overridden.items():
            if _EXPS.search(name):
                sizes.experts_by_buffer[buft] = sizes.experts_by_buffer.get(buft, 0) + 1
                if is_host_buffer(buft):
                    sizes.experts_ram += 1
                else:
                    sizes.experts_vram += 1
    return sizes


@dataclass
class LiveStats:
    """One live sample from a worker, sent at least twice a second while a request runs."""

    phase: str = "idle"  # "prompt" | "generate" | "bench" | "idle"
    elapsed_s: float = 0.0
    n_prompt: int = 0
    prompt_tok_s: float | None = None  # prompt tokens / time to first token
    tokens: int = 0  # generated so far
    decode_tok_s: float | None = None  # instant: over the last ~second
    decode_tok_s_avg: float | None = None  # since the first generated token
    rss_bytes: int | None = None
    vram_bytes: int | None = None  # this worker's GPU memory (NVML per process); None where unknown
    draft_proposed: int = 0
    draft_accepted: int = 0
    # load-time figures, copied in by the parent from the worker's LoadInfo
    weights_by_device: dict[str, int] = field(default_factory=dict)
    experts_ram: int = 0
    experts_vram: int = 0

    @property
    def acceptance(self) -> float | None:
        return self.draft_accepted / self.draft_proposed if self.draft_proposed else None

    def line(self) -> str:
        """One human line, for stderr in `moetui run`."""
        parts = [f"{self.phase}"]
        if self.prompt_tok_s is not None:
            parts.append(f"pp {self.prompt_tok_s:.1f} t/s ({self.n_prompt} tok)")
        if self.tokens:
            inst = f"{self.decode_tok_s:.1f}" if self.decode_tok_s is not None else "-"
            avg = f"{self.decode_tok_s_avg:.1f}" if self.decode_tok_s_avg is not None else "-"
            parts.append(f"tg {inst} t/s (avg {avg}) {self.tokens} tok")
        if self.rss_bytes is not None:
            parts.append(f"RSS {self.rss_bytes / MIB:.0f} MiB")
        if self.vram_bytes is not None:
            parts.append(f"VRAM {self.vram_bytes / MIB:.0f} MiB")
        if self.experts_ram or self.experts_vram:
            parts.append(f"experts RAM/VRAM {self.experts_ram}/{self.experts_vram}")
        if self.acceptance is not None:
            parts.append(f"draft acc {self.acceptance:.0%} ({self.draft_accepted}/{self.draft_proposed})")
        return " | ".join(parts)


class DecodeRate:
    """Instant and average decode speed from token timestamps; the instant rate spans the last `window_s`."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self.first: float | None = None
        self.count = 0
        self._recent: deque[tuple[float, int]] = deque()  # popped at the left once per token: a deque

    def add(self, now: float, n: int = 1) -> None:
        """Record tokens arriving at `now`. The first call only marks the start: the first token's time
        belongs to prompt processing, not decoding."""
        if self.first is None:
            self.first = now
            self._recent = deque([(now, 0)])
            return
        self.count += n
        self._recent.append((now, self.count))
        while len(self._recent) > 2 and now - self._recent[1][0] > self.window_s:
            self._recent.popleft()

    def instant(self, now: float) -> float | None:
        if len(self._recent) < 2:
            return None
        t0, c0 = self._recent[0]
        t1, c1 = self._recent[-1]
        if now - t1 > self.window_s:  # stalled: no token for a while
            return 0.0
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None

    def average(self) -> float | None:
        if self.first is None or len(self._recent) < 2:
            return None
        t_last = self._recent[-1][0]
        return self.count / (t_last - self.first) if t_last > self.first else None


_nvml_state: dict[str, Any] = {}


def process_vram_bytes(pid: int) -> int | None:
    """GPU memory used by `pid` on all NVIDIA GPUs, via NVML (pynvml imported lazily). None when NVML or
    pynvml is absent, or the driver does not report per-process memory."""
    if _nvml_state.get("failed"):
        return None
    try:
        nvml = _nvml_state.get("mod")
        if nvml is None:
            import pynvml as nvml  # noqa: PLC0415 - lazy: most runs have no NVIDIA GPU

            nvml.nvmlInit()
            _nvml_state["mod"] = nvml
        total, found = 0, False
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            for p in nvml.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid == pid and p.usedGpuMemory is not None:
                    total += int(p.usedGpuMemory)
                    found = True
        return total if found else None
    except Exception:  # any NVML failure: degrade to "unknown", never break a generation over a stat
        _nvml_state["failed"] = True
        return None
