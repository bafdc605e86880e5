"""Emulate a smaller card: hold all but CAP_GIB of the GPU's memory in this separate process, so that the
planner (NVML), moetui's worker and llama.cpp's own free-memory query all see only CAP_GIB free.
Usage: python3 vram_hold.py CAP_GIB  (prints "held N MiB" and waits until killed)."""

import signal
import sys

import torch

cap = float(sys.argv[1]) * 2**30
free, total = torch.cuda.mem_get_info()
hold = int(free - cap)
blocks = []
if hold > 0:
    # several blocks: one huge allocation can fail on fragmentation where smaller ones succeed
    step = 1 << 30
    while hold > 0:
        n = min(step, hold)
        blocks.append(torch.empty(n, dtype=torch.uint8, device="cuda"))
        hold -= n
torch.cuda.synchronize()
free_after, _ = torch.cuda.mem_get_info()
print(f"held {sum(b.numel() for b in blocks) >> 20} MiB; free now {free_after / 2**30:.2f} GiB", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()
