#!/usr/bin/env bash
# Issue 3 on a lent GPU machine, from the repository root there: capture `moetui detect --json` and the raw
# NVML readings with the CUDA build of llama.cpp (LLAMA_CPP_LIB_PATH, see setup.sh), time detect and the
# 2 Hz sampler, and put the RAM bandwidth probe beside sysbench / mbw / numpy on that machine.
# Carry: what setup.sh needs (.gpu/cuda-bin.tgz.* or .gpu/llama.cpp-slim.tgz, .gpu/pysite, .whl) and
# .gpu/hwbench.txz (Debian's sysbench + mbw with their libraries, run through wrappers that set
# LD_LIBRARY_PATH for them alone: tar cJf .gpu/hwbench.txz -C DIR hwbench). Usage (device tool): bash tuning/gpu/hardware_capture.sh TAG   (TAG: h100, h200 ...)
set -eo pipefail
TAG=${1:-gpu}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source tuning/gpu/setup.sh > "$OUT/setup.log" 2>&1 || { tail -40 "$OUT/setup.log"; exit 1; }
if [ -f .gpu/hwbench.txz ]; then mkdir -p /tmp/hwb && tar xJf .gpu/hwbench.txz -C /tmp/hwb && export PATH=/tmp/hwb/hwbench/bin:$PATH; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -m moetui detect --json --capture-nvml "$OUT/nvml_capture_$TAG.json" > "$OUT/detect_$TAG.json"
python3 -m moetui detect > "$OUT/detect_$TAG.txt"
cat "$OUT/detect_$TAG.txt"
python3 tuning/detect_cost.py --tag "$TAG" --out-dir "$OUT" | tail -30
python3 tuning/ram_bandwidth_check.py --repeats 3 --tag "$TAG" --out-dir "$OUT" | tail -20
python3 -m pytest tests/test_hardware_*.py -q -p no:cacheprovider 2>&1 | tail -15 || true
