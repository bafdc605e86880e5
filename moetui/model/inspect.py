"""Build a ModelInfo from GGUF headers: local files (split GGUFs are one model) or any ByteSource."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from moetui.errors import MoetuiError, ModelFileError, UnsupportedArchitecture
from moetui.model.gguf_header import ByteSource, GGUFHeader, read_file_header, read_header
from moetui.model.header_values import MAX_CONTEXT, MAX_DIM, MAX_EXPERTS, MAX_LAYERS, MAX_VOCAB, HeaderValues
from moetui.model.info import LayerInfo, ModelInfo, TensorRecord
from moetui.model.roles import Role, block_index, classify, expert_part

MOE_ARCHS = {"qwen3moe", "qwen2moe", "llama4", "llama", "deepseek2", "gpt-oss", "glm4moe", "mixtral",
             "deepseek", "olmoe", "granitemoe", "dots1", "ernie4_5-moe", "hunyuan-moe", "bailingmoe", "grok",
             "qwen3next", "qwen35moe", "qwen35", "smallthinker", "lfm2moe", "minimax-m2", "afmoe", "grovemoe"}
DENSE_ARCHS = {"llama", "qwen2", "qwen3", "mistral", "mistral3", "gemma", "gemma2", "gemma3", "phi3", "phi2",
               "granite", "deci", "command-r", "cohere2", "olmo", "olmo2", "exaone", "internlm2", "starcoder2",
               "falcon", "glm4", "chatglm", "stablelm", "gpt2", "minicpm", "seed_oss", "smollm3", "apertus"}
KNOWN_ARCHS = MOE_ARCHS | DENSE_ARCHS

MAX_NAME = 200
_SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")

# llama.cpp's type labels for `general.file_type` (LLAMA_FTYPE_*), for a recognisable quant name.
_FTYPE = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
          11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
          18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
          25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
          32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4"}


def split_siblings(path: Path) -> list[Path]:
    """All files of a split GGUF given any one of them, in order; [path] for a single file."""
    m = _SPLIT_RE.match(path.name)
    if not m:
        return [path]
    count = int(m.group("count"))
    files = [path.with_name(f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise ModelFileError(f"{path}: split model is missing {', '.join(missing)}")
    return files


def file_type_of(headers: Sequence[GGUFHeader]) -> str:
    """The quant a GGUF's header declares (general.file_type, as llama.cpp names it), else its most common
    tensor type; "?" when it has neither."""
    ftype = next((h.metadata.get("general.file_type") for h in headers if "general.file_type" in h.metadata), None)
    if isinstance(ftype, int) and not isinstance(ftype, bool) and ftype in _FTYPE:
        return _FTYPE[ftype]
    counts = Counter(t.type.name for h in headers for t in h.tensors)
    return counts.most_common(1)[0][0] if counts else "?"


def header_file_type(path: str | os.PathLike[str]) -> str | None:
    """The quant of a local GGUF read from its header (the first part's, for a split model); None when the
    header cannot be read."""
    try:
        label = file_type_of([read_file_header(path)])
    except (MoetuiError, OSError, ValueError):
        return None
    return None if label == "?" else label


def header_has_swa(path: str | os.PathLike[str]) -> bool:
    """Whether a local GGUF has sliding-window layers (read from its header); False when it cannot be read,
    so a flag that only SWA models accept (--swa-full) is left out rather than refused by llama.cpp."""
    try:
        return bool(inspect_file(path).swa_layers)
    except (MoetuiError, OSError, ValueError):
        return False


def inspect_file(path: str | os.PathLike[str]) -> ModelInfo:
    path = Path(path)
    files = split_siblings(path)
    headers = [read_file_header(f) for f in files]
    info = inspect_headers(headers, str(files[0]))
    info.files = [str(f) for f in files]
    info.file_bytes = sum(f.stat().st_size for f in files)
    return info


def inspect_source(src: ByteSource) -> ModelInfo:
    """Inspect one remote/other file without reading its weights (split siblings must be passed separately)."""
    h = read_header(src)
    info = inspect_headers([h], src.name)
    info.file_bytes = h.file_size
    return info


def inspect_headers(headers: Sequence[GGUFHeader], path: str) -> ModelInfo:
    md: dict[str, Any] = {}
    for h in headers:
        for k, v in h.metadata.items():
            md.setdefault(k, v)
    arch = md.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{path}: GGUF has no general.architecture")
    notes: list[str] = []
    if arch not in KNOWN_ARCHS:
        # No allow-list: whatever llama.cpp loads is inspected from its tensors and keys; the dry run is
        # what says whether llama.cpp really knows it.
        notes.append(f"architecture {arch!r} is not in moetui's table: layers, experts and caches are read "
                     f"from its tensors; llama.cpp's dry run checks the figures")
    v = HeaderValues(md, arch, path)
    n_layer_all = v.required("block_count", MAX_LAYERS)
    # llama.cpp: n_layer = block_count - nextn_predict_layers; the next-token (MTP) blocks at the end are
    # loaded only for an MTP draft context, never for generation ("model has unused tensor ... ignoring").
    nextn = v.count("nextn_predict_layers", 0, n_layer_all)
    n_layers = n_layer_all - nextn
    v.refuse_zero("embedding_length", "context_length", "attention.head_count", "attention.head_count_kv")
    n_embd = v.count("embedding_length", 0, MAX_DIM)
    n_head = v.count("attention.head_count", 0, MAX_DIM)
    n_head_kv = v.per_layer("attention.head_count_kv", n_head, n_layer_all, MAX_DIM)[:n_layers] if n_layers else [n_head]
    head_dim_k = v.count("attention.key_length", n_embd // max(n_head, 1), MAX_DIM)
    head_dim_v = v.count("attention.value_length", head_dim_k, MAX_DIM)

    tokens = md.get("tokenizer.ggml.tokens")
    n_vocab = v.count("vocab_size", len(tokens) if isinstance(tokens, list) else 0, MAX_VOCAB)

    records: list[TensorRecord] = []
    unused: list[TensorRecord] = []
    for h in headers:
        for t in h.tensors:
            role = classify(t.name)
            layer = block_index(t.name)
            if layer is not None and layer >= n_layer_all:
                # llama.cpp refuses a file with tensors it does not expect; sizing indexes layers by it
                raise ModelFileError(f"{path}: corrupt header (tensor {t.name} is beyond block_count {n_layer_all})")
            rec = TensorRecord(t.name, role, layer, t.shape, t.type.name, t.nbytes, expert_part(t.name))
            (unused if layer is not None and layer >= n_layers else records).append(rec)
    if not n_vocab:
        embd = next((r for r in records if r.role == Role.EMBEDDING), None)
        n_vocab = embd.shape[1] if embd and len(embd.shape) > 1 else 0
        if n_vocab > MAX_VOCAB:
            raise ModelFileError(f"{path}: corrupt header (token embedding of {n_vocab:,} rows)")
    if nextn:
        notes.append(f"{nextn} next-token (MTP) block{'s' * (nextn > 1)} ({_gib(sum(r.nbytes for r in unused))}) "
                     f"not loaded by llama.cpp for generation: not counted as layers")

    n_expert = v.count("expert_count", 0, MAX_EXPERTS)
    n_expert_used = v.count("expert_used_count", 0, MAX_EXPERTS)
    if n_expert:
        v.refuse_zero("expert_used_count")  # experts no token uses: the layer would output nothing
    if n_expert_used > n_expert:
        raise ModelFileError(f"{path}: corrupt header ({n_expert_used} experts used of {n_expert})")
    is_moe = n_expert > 0 and any(r.role == Role.EXPERTS for r in records)
    if arch in MOE_ARCHS - DENSE_ARCHS and not is_moe and n_expert:
        raise ModelFileError(f"{path}: {arch} header says {n_expert} experts but has no expert tensors")

    bytes_by_role: dict[str, int] = {r.value: 0 for r in Role}
    parts: dict[str, int] = {}
    layers = {i: LayerInfo(i, False, False) for i in range(n_layers)}
    for r in records:
        bytes_by_role[r.role.value] += r.nbytes
        layer = layers.get(r.layer) if r.layer is not None else None
        if r.role == Role.EXPERTS and r.expert_part:
            parts[r.expert_part] = parts.get(r.expert_part, 0) + r.nbytes
            if layer:
                layer.is_moe = True
                layer.expert_bytes[r.expert_part] = layer.expert_bytes.get(r.expert_part, 0) + r.nbytes
        elif layer:
            layer.other_bytes += r.nbytes

    sliding = v.count("attention.sliding_window", 0, MAX_CONTEXT)
    swa_layers: list[int] = []
    pattern = md.get(f"{arch}.attention.sliding_window_pattern")
    if sliding and isinstance(pattern, list) and len(pattern) >= n_layers:
        # llama.cpp's per-layer flags (true: sliding-window layer), e.g. gemma3n, step35
        swa_layers = [i for i in range(n_layers) if pattern[i] is True or pattern[i] == 1]
    elif arch == "gpt-oss" and sliding:
        swa_layers = [i for i in range(n_layers) if i % 2 < 1]
    elif arch == "llama4":
        if sliding == 0 and v.has("attention.sliding_window"):
            sliding = 0
        else:
            sliding = sliding or 8192
            swa_layers = [i for i in range(n_layers) if i % 4 < 3]
    else:
        sliding = 0 if not swa_layers else sliding

    recurrent = _recurrent_layers(records, md, arch, n_layers)
    shared_count = v.count("expert_shared_count", 0, MAX_EXPERTS)
    if not shared_count and any(r.role == Role.SHARED_EXPERTS and r.expert_part is None
                                and "_inp_" not in r.name for r in records):
        shared_count = 1  # qwen3next, qwen35moe, llama4: shared-expert tensors with no count key

    file_type = file_type_of(headers)
    type_counts = Counter(r.type for r in records)

    ident = hashlib.sha256()
    for h in headers:
        ident.update(h.header_bytes)

    total = sum(r.nbytes for r in records)
    n_params = 0
    for r in records:
        n = 1
        for d in r.shape:
            n *= d
        n_params += n

    return ModelInfo(
        path=path,
        files=[h.source_name for h in headers],
        architecture=arch,
        name=_display_name(md.get("general.name"), path),
        file_type=file_type,
        is_moe=is_moe,
        n_layers=n_layers,
        n_embd=n_embd,
        n_vocab=n_vocab,
        context_length=v.count("context_length", 0, MAX_CONTEXT),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_expert=n_expert if is_moe else 0,
        n_expert_used=n_expert_used if is_moe else 0,
        n_expert_shared=shared_count if is_moe else 0,
        expert_ffn=v.count("expert_feed_forward_length", 0, MAX_DIM) or _infer_expert_ffn(records),
        dense_ffn=v.count("feed_forward_length", 0, MAX_DIM),
        leading_dense_layers=v.count("leading_dense_block_count", 0, MAX_LAYERS),
        moe_layer_step=v.count("interleave_moe_layer_step", 0, MAX_LAYERS),
        kv_lora_rank=v.count("attention.kv_lora_rank", 0, MAX_DIM),
        q_lora_rank=v.count("attention.q_lora_rank", 0, MAX_DIM),
        mla_head_dim_k=v.count("attention.key_length_mla", 0, MAX_DIM),
        mla_head_dim_v=v.count("attention.value_length_mla", 0, MAX_DIM),
        sliding_window=sliding if swa_layers else 0,
        swa_layers=swa_layers,
        recurrent_layers=recurrent,
        recurrent_state_per_layer=_recurrent_state_elements(records, v, n_embd) if recurrent else 0,
        nextn_layers=nextn,
        unused_bytes=sum(r.nbytes for r in unused),
        notes=notes,
        tensor_types=dict(type_counts),
        bytes_by_role=bytes_by_role,
        expert_bytes_by_part=parts,
        layers=[layers[i] for i in range(n_layers)],
        tensors=records,
        total_bytes=total,
        file_bytes=sum(h.file_size for h in headers),
        n_params=n_params,
        identity=ident.hexdigest()[:16],
    )


_RECURRENT_TENSORS = ("ssm_", "time_mix_", "shortconv")
_ATTENTION_KV_TENSORS = ("attn_k.", "attn_qkv.", "attn_kv_a_mqa.", "attn_k_b.")


def _recurrent_layers(records: list[TensorRecord], md: dict[str, Any], arch: str, n_layers: int) -> list[int]:
    """Layers llama.cpp gives a recurrent state (Gated DeltaNet, Mamba, RWKV, short conv) instead of a KV
    cache: from the tensors (an ssm_/time_mix_/shortconv tensor and no attention K), else the
    `attention.recurrent_layers` flags llama.cpp reads."""
    kinds: dict[int, set[str]] = {}
    for r in records:
        if r.layer is None:
            continue
        name = r.name.split(".", 2)[2] if r.name.count(".") >= 2 else r.name
        if name.startswith(_RECURRENT_TENSORS):
            kinds.setdefault(r.layer, set()).add("recurrent")
        # a GDN layer's fused attn_qkv feeds its conv: it is attention only beside a KV head
        if name.startswith(_ATTENTION_KV_TENSORS) and not name.startswith("attn_qkv."):
            kinds.setdefault(r.layer, set()).add("kv")
    found = sorted(il for il, k in kinds.items() if "recurrent" in k and "kv" not in k and il < n_layers)
    if found:
        return found
    flags = md.get(f"{arch}.attention.recurrent_layers")
    if isinstance(flags, list) and len(flags) >= n_layers:
        return [i for i in range(n_layers) if flags[i] is True or flags[i] == 1]
    return []


def _recurrent_state_elements(records: list[TensorRecord], v: HeaderValues, n_embd: int) -> int:
    """n_embd_r + n_embd_s of llama.cpp's hparams: the conv state ((d_conv - 1) x conv channels) and the
    SSM / delta-rule state (d_state x d_inner) of one recurrent layer and sequence."""
    d_conv = v.count("ssm.conv_kernel", 0, MAX_DIM)
    d_inner = v.count("ssm.inner_size", 0, MAX_DIM)
    d_state = v.count("ssm.state_size", 0, MAX_DIM)
    n_group = v.count("ssm.group_count", 0, MAX_DIM)
    conv = next((r for r in records if r.name.endswith("ssm_conv1d.weight") and len(r.shape) >= 2), None)
    if conv is not None:
        d_conv = d_conv or int(conv.shape[0])
        channels = int(conv.shape[1])
    else:
        channels = d_inner + 2 * n_group * d_state
    r_elems = max(d_conv - 1, 0) * channels
    l_cache = v.count("shortconv.l_cache", 0, MAX_DIM)
    if l_cache:
        r_elems = n_embd * (l_cache - 1)  # LFM2 short convolutions
    return r_elems + d_state * d_inner


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _display_name(name: Any, path: str) -> str:
    """general.name as one printable line: a header may put anything there (a list, escapes, 64 MB)."""
    if not isinstance(name, str) or not name.strip():
        return Path(path).stem
    name = "".join(c if c.isprintable() else "\ufffd" for c in name)
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."


def _infer_expert_ffn(records: list[TensorRecord]) -> int:
    for r in records:
        if r.role == Role.EXPERTS and r.expert_part == "up" and len(r.shape) >= 2:
            return int(r.shape[1])
    return 0
