"""Inspection reports bytes that we compute here independently, from the shapes and ggml block sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from moetui.model.inspect import inspect_file
from moetui.model.quant_mix import quant_type
from moetui.model.shapes import load_shape, scaled
from moetui.model.tensor_layout import tensor_specs

from conftest import TINY_SHAPES


def _expected_bytes(shape_name: str, mix: str = "Q4_K_M") -> dict[str, int]:
    """Independent of moetui.model.inspect: sum ne/block*size per tensor, grouped by name patterns."""
    shape = scaled(load_shape(shape_name), "tiny")
    groups = {"experts": 0, "total": 0, "embd": 0, "output": 0}
    for spec in tensor_specs(shape):
        if spec.layer is not None and spec.layer >= shape.n_layers:
            continue  # a next-token (MTP) block: in the file, never loaded by llama.cpp for generation
        qt = quant_type(spec, shape, mix)
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qt)]
        n = 1
        for d in spec.shape:
            n *= d
        nbytes = n // block * size
        groups["total"] += nbytes
        if "_exps." in spec.name:
            groups["experts"] += nbytes
        if spec.name == "token_embd.weight":
            groups["embd"] += nbytes
        if spec.name == "output.weight":
            groups["output"] += nbytes
    return groups


@pytest.mark.parametrize("shape_name", TINY_SHAPES)
def test_inspect_bytes_match_shapes(tiny_model, shape_name: str) -> None:
    mix = "MXFP4" if shape_name.startswith("gpt-oss") else "Q4_K_M"
    info = inspect_file(tiny_model(shape_name, mix))
    exp = _expected_bytes(shape_name, mix)
    assert info.total_bytes == exp["total"]
    assert info.routed_expert_bytes == exp["experts"]
    assert info.bytes_by_role["token_embedding"] == exp["embd"]
    assert info.bytes_by_role["output_head"] == exp["output"]
    shape = scaled(load_shape(shape_name), "tiny")
    assert info.architecture == shape.architecture
    assert info.n_layers == shape.n_layers
    assert info.is_moe == shape.is_moe
    assert info.n_expert == shape.n_expert
    assert info.n_expert_used == shape.n_expert_used
    assert info.n_vocab == shape.n_vocab
    if shape.is_moe:
        frac = shape.n_expert_used / shape.n_expert
        embd_read = exp["embd"] if shape.tie_embeddings else exp["embd"] // shape.n_vocab
        dense = exp["total"] - exp["experts"] - exp["embd"] + embd_read
        assert info.active_bytes_per_token == int(dense + exp["experts"] * frac)
        per_layer = sum(layer.expert_total for layer in info.layers)
        assert per_layer == exp["experts"]


def test_kv_bytes_per_token_qwen3(tiny_moe) -> None:
    info = inspect_file(tiny_moe)
    shape = scaled(load_shape("qwen3-30b-a3b"), "tiny")
    per_layer = shape.n_head_kv * shape.head_dim * 2  # K and V elements
    assert info.kv_bytes_per_token("f16") == shape.n_layers * per_layer * 2
    assert info.kv_bytes_per_token("q8_0") == pytest.approx(shape.n_layers * per_layer * 34 / 32)
    assert info.kv_bytes_per_token("q4_0") == pytest.approx(shape.n_layers * per_layer * 18 / 32)


def test_kv_mla_has_no_v_cache(tiny_model) -> None:
    info = inspect_file(tiny_model("deepseek-v2-lite"))
    shape = scaled(load_shape("deepseek-v2-lite"), "tiny")
    assert info.is_mla
    assert info.kv_bytes_per_token("f16") == shape.n_layers * (shape.kv_lora_rank + shape.rope_dim) * 2


def test_gpt_oss_sliding_window_layers(tiny_model) -> None:
    info = inspect_file(tiny_model("gpt-oss-20b", "MXFP4"))
    assert info.swa_layers == [i for i in range(info.n_layers) if i % 2 == 0]
    assert info.sliding_window == 128
    assert "MXFP4" in info.tensor_types


def test_dense_model_is_reported_dense(tiny_draft) -> None:
    info = inspect_file(tiny_draft)
    assert not info.is_moe and info.n_expert == 0 and info.routed_expert_bytes == 0


def test_full_scale_qwen3_30b_proxy_size_matches_published() -> None:
    """The published Qwen3-30B-A3B Q4_K_M GGUF is about 18.6 GB; the planned proxy must be within 3%."""
    from moetui.model.proxy import predicted_size

    size = predicted_size(load_shape("qwen3-30b-a3b"), "Q4_K_M")
    assert abs(size - 18.6e9) / 18.6e9 < 0.03


def test_cli_inspect_json(tiny_moe) -> None:
    out = subprocess.run([sys.executable, "-m", "moetui", "inspect", str(tiny_moe), "--json"],
                         capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["architecture"] == "qwen3moe"
    assert data["active_bytes_per_token"] < data["total_bytes"]
    assert set(data["kv_bytes_per_token"]) == {"f16", "q8_0", "q4_0"}
