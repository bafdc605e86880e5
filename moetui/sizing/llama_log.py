"""Parse the buffer sizes llama.cpp logs when it loads a model and creates a context (verbose=True).

These are llama.cpp's own figures, the ground truth the memory model is calibrated and tested against:

    load_tensors:   CPU_Mapped model buffer size =     4.81 MiB
    load_tensors:   CPU_REPACK model buffer size =     2.95 MiB
    load_tensors:        CUDA0 model buffer size =  1234.00 MiB
    llama_kv_cache:        CPU KV buffer size =     4.00 MiB
    sched_reserve:        CPU compute buffer size =    42.76 MiB
    llama_context:        CPU  output buffer size =     0.01 MiB

Pure text in, numbers out (no I/O), so the TUI can also show what a real load allocated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MIB = 1024 * 1024

_BUF = re.compile(
    r"^(?P<where>\w+):\s+(?P<dev>[A-Za-z0-9_]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[0-9.]+)\s*MiB",
    re.MULTILINE,
)


@dataclass
class LoadLog:
    """Bytes per buffer name, as logged (MiB with two decimals, so +-5 KiB)."""

    model: dict[str, int] = field(default_factory=dict)  # "CPU_Mapped", "CPU_REPACK", "CUDA0" ...
    kv: dict[str, int] = field(default_factory=dict)  # "CPU", "CUDA0" ...
    compute: dict[str, int] = field(default_factory=dict)  # "CPU", "CUDA0", "CUDA_Host" ...
    output: dict[str, int] = field(default_factory=dict)

    @property
    def model_total(self) -> int:
        return sum(self.model.values())

    @property
    def kv_total(self) -> int:
        return sum(self.kv.values())

    @property
    def compute_total(self) -> int:
        return sum(self.compute.values())


def parse_load_log(text: str) -> LoadLog:
    out = LoadLog()
    for m in _BUF.finditer(text):
        nbytes = int(round(float(m.group("mib")) * MIB))
        kind, dev = m.group("kind"), m.group("dev")
        target = {"model": out.model, "KV": out.kv, "RS": out.kv, "compute": out.compute, "output": out.output}[kind]
        # llama.cpp logs the compute buffer again at teardown ("... is X MiB, matches expectation"):
        # that line has no "=" form so it is not matched; a repeated reserve overwrites, keeping the last.
        if kind in ("KV", "RS"):
            target[dev] = target.get(dev, 0) + nbytes
        else:
            target[dev] = nbytes
    return out
