"""Issue 19, defects 1-6: hostile metadata values in an otherwise valid GGUF give a one-line
ModelFileError from inspect (and so from plan, run, tune and export, which all start there), within a
bounded time and memory; a FIFO is refused at once; `inspect --tensors` output stays bounded."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from moetui.errors import ModelFileError, MoetuiError
from moetui.model.gguf_header import read_header
from moetui.model.inspect import inspect_source
from tests.gguf_hostile import hostile_source, proxy_parts

# every integer key inspect derives a size from, as the fuzzer found them
INT_KEYS = ["{arch}.block_count", "{arch}.embedding_length", "{arch}.attention.head_count",
            "{arch}.attention.head_count_kv", "{arch}.attention.key_length", "{arch}.attention.value_length",
            "{arch}.vocab_size", "{arch}.expert_count", "{arch}.expert_used_count", "{arch}.expert_shared_count",
            "{arch}.expert_feed_forward_length", "{arch}.feed_forward_length", "{arch}.leading_dense_block_count",
            "{arch}.interleave_moe_layer_step", "{arch}.attention.kv_lora_rank", "{arch}.attention.q_lora_rank",
            "{arch}.attention.key_length_mla", "{arch}.attention.value_length_mla",
            "{arch}.attention.sliding_window", "{arch}.context_length", "general.alignment"]
BAD_VALUES = ["12", math.nan, math.inf, -math.inf, 2.5, [1, 2, 3], ["a"], True]


def _plan_or_refuse(src) -> None:  # type: ignore[no-untyped-def]
    """What every command does with a model: inspect it, then plan it (a MoetuiError is a clean refusal)."""
    from moetui.hardware import load_rig
    from moetui.sizing.plan import plan

    try:
        info = inspect_source(src)
        plan(info, load_rig("rtx4090-ddr5-64"))
    except MoetuiError:
        pass


@pytest.mark.parametrize("key", INT_KEYS)
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_wrong_type_in_an_integer_key(key: str, value: object) -> None:
    """Defect 1: a string, NaN, inf or list in an integer key gave ValueError/TypeError/OverflowError."""
    _plan_or_refuse(hostile_source("deepseek-v2-lite", **{key: value}))
    _plan_or_refuse(hostile_source("gpt-oss-20b", **{key: value}))


@pytest.mark.parametrize("key", ["{arch}.block_count", "{arch}.embedding_length", "{arch}.attention.head_count_kv",
                                 "{arch}.context_length", "{arch}.expert_used_count", "general.alignment"])
def test_wrong_type_is_named_in_the_message(key: str) -> None:
    with pytest.raises(ModelFileError, match="corrupt header"):
        inspect_source(hostile_source("qwen3-30b-a3b", **{key: "twelve"}))


@pytest.mark.parametrize("layers", [5_000_000, 2**32 - 1])
def test_claimed_layers_do_not_cost_memory(layers: int) -> None:
    """Defect 2: memory grew with the claimed block_count (5M layers: 28 s, 1.4 GB; 2^32-1: MemoryError)."""
    src = hostile_source("qwen3-30b-a3b", **{"{arch}.block_count": layers})
    tracemalloc.start()
    t0 = time.process_time()  # CPU time: what the input costs, however loaded the machine is
    with pytest.raises(ModelFileError, match="block_count"):
        inspect_source(src)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.process_time() - t0 < 2.0
    assert peak < 50 * 2**20


def test_missing_block_count() -> None:
    """Defect 3: one flipped byte in the key name gave IndexError in inspect, --json and plan."""
    with pytest.raises(ModelFileError, match="no qwen3moe.block_count"):
        inspect_source(hostile_source("qwen3-30b-a3b", **{"{arch}.block_count": None}))


@pytest.mark.parametrize("value", [[], [4, 4], [4] * 50])
def test_head_count_kv_array_of_the_wrong_length(value: list[int]) -> None:
    with pytest.raises(ModelFileError, match="entries for 4 layers"):
        inspect_source(hostile_source("qwen3-30b-a3b", **{"{arch}.attention.head_count_kv": value}))


def test_head_count_kv_array_per_layer_is_fine() -> None:
    info = inspect_source(hostile_source("qwen3-30b-a3b", **{"{arch}.attention.head_count_kv": [2, 4, 2, 4]}))
    assert info.n_head_kv == [2, 4, 2, 4]


@pytest.mark.parametrize("key", ["{arch}.attention.head_count_kv", "{arch}.embedding_length", "{arch}.attention.key_length",
                                 "{arch}.context_length", "{arch}.expert_count", "{arch}.block_count"])
def test_negative_values_are_refused(key: str) -> None:
    """Defect 4: negative header values were planned as valid ("KV -32 MiB, fits")."""
    with pytest.raises(ModelFileError, match="corrupt header"):
        inspect_source(hostile_source("qwen3-30b-a3b", **{key: -32}))


def test_more_experts_used_than_there_are() -> None:
    with pytest.raises(ModelFileError, match="experts used"):
        inspect_source(hostile_source("qwen3-30b-a3b", **{"{arch}.expert_used_count": 9}))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """Defect 5: `moetui inspect` on a FIFO hung forever (open() blocks until a writer comes)."""
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "moetui", "inspect", str(fifo)], capture_output=True, text=True, timeout=30)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 2
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr


def test_character_device_is_refused() -> None:
    from moetui.model.inspect import inspect_file

    with pytest.raises(ModelFileError, match="not a regular file"):
        inspect_file("/dev/zero")


def _with_tensor_names(names: list[str]) -> bytes:
    from moetui.model.gguf_writer import PlannedTensor, header_bytes

    md, tensors = proxy_parts("qwen3-30b-a3b")
    renamed = [PlannedTensor(n, t.shape, t.type, t.write) for n, t in zip(names, tensors)] + tensors[len(names):]
    return header_bytes(md, renamed)[0]


def test_long_tensor_names_are_refused_like_llama_cpp_does() -> None:
    """Defect 6: a 45 KB header made `inspect --tensors` print 53-129 MB (a 40 KB name pads every row)."""
    from tests.gguf_hostile import MemSource, data_bytes

    _, tensors = proxy_parts("qwen3-30b-a3b")
    with pytest.raises(ModelFileError, match="tensor name"):
        read_header(MemSource(_with_tensor_names(["blk.0." + "x" * 40_000]), data_bytes(tensors)))


def test_duplicate_tensor_names_are_refused() -> None:
    from tests.gguf_hostile import MemSource, data_bytes

    _, tensors = proxy_parts("qwen3-30b-a3b")
    head = _with_tensor_names([tensors[1].name])
    with pytest.raises(ModelFileError, match="appears twice"):
        read_header(MemSource(head, data_bytes(tensors)))


def test_inspect_tensors_output_is_bounded_and_has_no_escapes(tmp_path: Path) -> None:
    from tests.gguf_hostile import data_bytes

    _, tensors = proxy_parts("qwen3-30b-a3b")
    head = _with_tensor_names(["\x1b]0;pwned\x07blk.0.attn_q.weight"])
    src = hostile_source("qwen3-30b-a3b", **{"general.name": "\x1b[2J" + "N" * 100_000})
    path = tmp_path / "m.gguf"
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + data_bytes(tensors))
    path2 = tmp_path / "m2.gguf"
    with open(path2, "wb") as fh:
        fh.write(src.head)
        fh.truncate(src.size())
    for p, header in ((path, head), (path2, src.head)):
        r = subprocess.run([sys.executable, "-m", "moetui", "inspect", "--tensors", str(p)], capture_output=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout) < 4 * len(header)  # bounded by the header, whatever it claims
        assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout
