"""The rig: what the sizing core, the tuner and the TUI know about a machine.

One schema for a detected machine and for a reference rig read from `presets/rigs/*.toml`, so
planning can answer "what if" for hardware the user does not have. Every field that detection
may fail to read is Optional; `Rig.warnings` says, in words, what could not be read and why.

Units: bytes for sizes, GB/s (10**9 bytes per second) for bandwidths, MHz for clocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from moetui.hardware.rpc import RemoteDevice

SCHEMA_VERSION = 1


@dataclass
class MigDevice:
    """One MIG instance of an NVIDIA GPU (CUDA sees these, not the whole card, when MIG is on)."""

    index: int
    uuid: str | None = None
    vram_total_bytes: int | None = None
    vram_free_bytes: int | None = None


@dataclass
class GPUInfo:
    name: str
    vendor: str = "unknown"  # "nvidia" | "amd" | "apple" | "unknown"
    index: int = 0
    uuid: str | None = None
    # Memory a model can use on this device. With MIG on, the first MIG instance's memory
    # (the slice CUDA hands to a process by default); the whole card is in card_vram_total_bytes.
    vram_total_bytes: int = 0
    vram_free_bytes: int = 0
    vram_used_bytes: int | None = None
    card_vram_total_bytes: int | None = None
    # Theoretical peak memory bandwidth, GB/s. None when it cannot be derived.
    mem_bandwidth_gbs: float | None = None
    # Host link bandwidth per direction, GB/s, at the best generation/width the link supports.
    # None for unified memory (Apple) where there is no host link to cross.
    pcie_bandwidth_gbs: float | None = None
    memory_bus_width_bits: int | None = None
    max_mem_clock_mhz: int | None = None
    pcie_gen_current: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_current: int | None = None
    pcie_width_max: int | None = None
    compute_capability: str | None = None  # "9.0"
    driver_version: str | None = None
    cuda_version: str | None = None  # highest CUDA the driver supports, e.g. "12.4"
    pci_bus_id: str | None = None
    power_limit_w: float | None = None
    unified_memory: bool = False
    mig_enabled: bool = False
    mig_devices: list[MigDevice] = field(default_factory=list)


@dataclass
class CPUInfo:
    model: str = "unknown"
    arch: str = "unknown"  # platform.machine(): x86_64, aarch64, arm64
    physical_cores: int = 1
    logical_cores: int = 1
    performance_cores: int | None = None  # hybrid CPUs only (Intel P/E, Apple perflevels)
    efficiency_cores: int | None = None
    # ISA features llama.cpp dispatches on, upper case: AVX, AVX2, FMA, F16C, AVX512, AVX512_VNNI,
    # AVX512_BF16, AVX_VNNI, AMX_INT8, AMX_BF16, NEON, DOTPROD, MATMUL_INT8, SVE, SVE2 ...
    flags: list[str] = field(default_factory=list)
    numa_nodes: int = 1
    l3_cache_bytes: int | None = None


@dataclass
class MemoryInfo:
    total_bytes: int = 0
    available_bytes: int = 0
    swap_total_bytes: int = 0
    swap_free_bytes: int = 0
    # Published peak (channels x transfer rate); presets only, detection cannot read DIMM speeds
    # without root.
    theoretical_bandwidth_gbs: float | None = None


@dataclass
class LlamaDevice:
    """One ggml backend device as the installed llama.cpp sees it."""

    name: str
    description: str = ""
    type: str = "unknown"  # "cpu" | "gpu" | "igpu" | "accel"
    memory_free_bytes: int | None = None
    memory_total_bytes: int | None = None


@dataclass
class LlamaBuildInfo:
    installed: bool = False
    version: str | None = None
    gpu_offload: bool = False
    backends: list[str] = field(default_factory=list)  # ggml backend registry names: "CUDA", "CPU" ...
    devices: list[LlamaDevice] = field(default_factory=list)
    system_info: str | None = None  # llama_print_system_info(): the CPU features the build uses
    lib_dir: str | None = None  # folder of the libllama/libggml in use (LLAMA_CPP_LIB_PATH or the package lib/)
    # whether llama.cpp's repacked CPU weights (AMX, CPU_REPACK) run here; None: not checked (a preset rig)
    repack_safe: bool | None = None
    repack_note: str | None = None
    # Plain-words advice when the build cannot use the hardware (e.g. CPU-only build on an NVIDIA rig).
    advice: str | None = None


@dataclass
class BandwidthResult:
    """The RAM bandwidth probe's result (see moetui.hardware.bandwidth)."""

    copy_gbs: float | None = None  # STREAM-style copy: (read + write bytes) / time
    read_gbs: float | None = None  # sum over the buffer: read bytes / time
    threads: int = 0
    buffer_bytes: int = 0
    seconds: float = 0.0
    cached: bool = False
    interrupted: bool = False
    # when the figure in use was measured (epoch seconds), and how many starts have checked it since
    measured_at: float | None = None
    checks: int = 0
    # this start's quick re-check of a cached figure (GB/s), and what moetui made of it, in words:
    # "re-measured: ..." when the cached figure looked disturbed, "RAM busy now: ..." when the check read less
    check_gbs: float | None = None
    note: str = ""

    @property
    def best_gbs(self) -> float | None:
        vals = [v for v in (self.copy_gbs, self.read_gbs) if v]
        return max(vals) if vals else None


@dataclass
class Rig:
    name: str
    source: str = "detected"  # "detected" | "preset"
    gpus: list[GPUInfo] = field(default_factory=list)
    cpu: CPUInfo = field(default_factory=CPUInfo)
    memory: MemoryInfo = field(default_factory=MemoryInfo)
    build: LlamaBuildInfo = field(default_factory=LlamaBuildInfo)
    # Measured (detected rigs) or typical measured (presets) RAM bandwidth, GB/s; what the CPU
    # side of a split model reads weights at. None when neither was available.
    ram_bandwidth_gbs: float | None = None
    bandwidth_probe: BandwidthResult | None = None
    os: str | None = None
    fingerprint: str = ""
    notes: str | None = None  # presets: where the figures come from
    warnings: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    remotes: list[RemoteDevice] = field(default_factory=list)  # devices of RPC servers (detect --rpc)

    # ---- convenience for the sizing core --------------------------------------------------
    @property
    def total_vram_bytes(self) -> int:
        return sum(g.vram_total_bytes for g in self.gpus)

    @property
    def free_vram_bytes(self) -> int:
        return sum(g.vram_free_bytes for g in self.gpus)

    @property
    def has_nvidia(self) -> bool:
        return any(g.vendor == "nvidia" for g in self.gpus)

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict. None values are kept (JSON null); TOML writers drop them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rig:
        """Tolerant reader: missing keys take defaults and unknown keys are ignored, so a rig saved by
        a newer or older moetui (or a hand-written preset) still loads."""
        d = dict(d)
        gpus = [_build(GPUInfo, g) for g in d.pop("gpus", None) or []]
        for g in gpus:
            g.mig_devices = [m if isinstance(m, MigDevice) else _build(MigDevice, m) for m in g.mig_devices]
        build_d = dict(d.pop("build", None) or {})
        devices = [_build(LlamaDevice, x) for x in build_d.pop("devices", None) or []]
        build = _build(LlamaBuildInfo, build_d)
        build.devices = devices
        probe = d.pop("bandwidth_probe", None)
        rig = _build(cls, d)
        rig.gpus = gpus
        rig.cpu = _build(CPUInfo, d.get("cpu") or {})
        rig.memory = _build(MemoryInfo, d.get("memory") or {})
        rig.build = build
        rig.bandwidth_probe = _build(BandwidthResult, probe) if probe else None
        rig.warnings = list(rig.warnings or [])
        rig.remotes = [_build(RemoteDevice, r) for r in d.get("remotes") or []]
        return rig


T = TypeVar("T")


def _build(klass: type[T], d: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(klass)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in d.items() if k in names and v is not None}
    if klass is Rig and "name" not in kwargs:
        kwargs["name"] = "unnamed rig"
    if klass is GPUInfo and "name" not in kwargs:
        kwargs["name"] = "unknown GPU"
    if klass is LlamaDevice and "name" not in kwargs:
        kwargs["name"] = "unknown device"
    return klass(**kwargs)
