"""Which chat template a model is chatted with: one answer for the worker (Chat, `moetui run`), the
exported llama-server / llama-cli lines and `moetui serve`.

The GGUF's own `tokenizer.chat_template` when it has one. Without one: an instruction-tuned file (its
general.finetune or name says it, instruct, chat) gets the llama.cpp built-in template of its family
(llama.cpp's own list, `llm_chat_template` in src/llama-chat.cpp, names as `--chat-template` takes them);
a base (pretrained) model gets a plain "User: ... / Assistant:" transcript (llama.cpp's built-in
"rwkv-world", pure text) that stops at the next "User:". Never llama-cpp-python's silent "llama-2" fallback.
Measured on the base Gemma 3 270M (moetui[real]), greedy: llama-2's [INST] answered "Question 1 / (a) /
4000000000…", the Gemma turn format (made for the -it model) "What is the capital of France? mendatang",
the plain transcript "The capital of France is Paris."

How each tool is told (`server_args`): the file's template needs nothing (llama.cpp reads it, jinja is on
by default); a built-in name needs `--chat-template NAME --no-jinja`, because with jinja on (this llama.cpp's
default) `--chat-template` takes a jinja *text*, and the bare word "gemma" would be rendered as the literal
prompt "gemma"; the transcript's stop is `-r` (llama-server's default stop string for every request).
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


# llama.cpp 0c1e57098's built-in templates (src/llama-chat.cpp, LLM_CHAT_TEMPLATES), in its order;
# tests/test_chat_template.py checks the list against the library's own llama_chat_builtin_templates().
BUILTIN_TEMPLATES = (
    "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1", "mistral-v3",
    "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4", "falcon3", "zephyr", "monarch",
    "gemma", "orion", "openchat", "vicuna", "vicuna-orca", "deepseek", "deepseek2", "deepseek3",
    "deepseek-ocr", "command-r", "llama3", "chatglm3", "chatglm4", "glmedge", "minicpm", "exaone3", "exaone4",
    "exaone-moe", "rwkv-world", "granite", "granite-4.0", "granite-4.1", "gigachat", "megrez", "yandex",
    "bailing", "bailing-think", "bailing2", "llama4", "smolvlm", "hunyuan-moe", "gpt-oss", "hunyuan-dense",
    "hunyuan-vl", "kimi-k2", "seed_oss", "grok-2", "pangu-embedded", "solar-open",
)

# general.architecture -> the built-in template of that family (the families whose files may lack one).
FAMILY_TEMPLATES: dict[str, str] = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "qwen": "chatml", "qwen2": "chatml", "qwen2moe": "chatml", "qwen3": "chatml", "qwen3moe": "chatml",
    "qwen3next": "chatml", "qwen2vl": "chatml", "qwen3vl": "chatml", "qwen3vlmoe": "chatml",
    "llama4": "llama4", "phi3": "phi3", "deepseek2": "deepseek3", "gpt-oss": "gpt-oss",
    "glm4moe": "chatglm4", "chatglm": "chatglm4", "command-r": "command-r", "cohere2": "command-r",
    "granite": "granite", "granitemoe": "granite", "exaone": "exaone3", "exaone4": "exaone4",
    "hunyuan-moe": "hunyuan-moe", "hunyuan-dense": "hunyuan-dense", "bailingmoe": "bailing",
    "bailingmoe2": "bailing2", "grok": "grok-2", "minicpm": "minicpm", "falcon": "falcon3",
}
DEFAULT_TEMPLATE = "chatml"  # what llama.cpp itself falls back to (common_chat_templates_init)
TRANSCRIPT_TEMPLATE = "rwkv-world"  # "User: ...\n\nAssistant:", no special tokens: for base models
TRANSCRIPT_STOP = "\nUser:"  # a base model goes on to write the user's next turn
# general.finetune / general.name words of an instruction-tuned model
_TUNED = re.compile(r"(^|[^a-z])(it|instruct|chat|sft|dpo|rlhf|assistant)([^a-z]|$)", re.IGNORECASE)


class TemplateSource(StrEnum):
    MODEL = "model"  # the GGUF's own tokenizer.chat_template (jinja)
    FAMILY = "family"  # llama.cpp's built-in template for the model's architecture
    BASE = "base"  # a base model: a plain User/Assistant transcript
    GUESS = "guess"  # no template and no known family: ChatML, llama.cpp's default


@dataclass(frozen=True)
class ChatTemplate:
    source: TemplateSource
    name: str  # a BUILTIN_TEMPLATES name, or "the model's own"
    jinja: str | None = None  # the file's template text (source MODEL)
    architecture: str = ""
    stop: tuple[str, ...] = ()  # stop strings besides the model's end-of-generation tokens

    @property
    def builtin(self) -> str | None:
        """The llama.cpp built-in template name, when one is used."""
        return None if self.source is TemplateSource.MODEL else self.name

    @property
    def label(self) -> str:
        """A few words for a status line."""
        if self.source is TemplateSource.MODEL:
            return "template: the model's own"
        if self.source is TemplateSource.BASE:
            return "template: plain transcript (a base model)"
        return f"template: {self.name} ({'built-in' if self.source is TemplateSource.FAMILY else 'a guess'})"

    @property
    def why(self) -> str:
        """Where the template came from, in a sentence."""
        if self.source is TemplateSource.MODEL:
            return "the chat template stored in the model file"
        if self.source is TemplateSource.FAMILY:
            return (f"llama.cpp's built-in {self.name!r} template for {self.architecture}: the file (an "
                    "instruction-tuned model) has none")
        if self.source is TemplateSource.BASE:
            return ("a base model, not tuned for chat, with no template: a plain 'User: / Assistant:' transcript "
                    f"(llama.cpp's {self.name!r}), stopping at the next 'User:'")
        return (f"ChatML, llama.cpp's default, as a guess: the file has no template and moetui knows no "
                f"built-in for architecture {self.architecture or '(none)'!r}")

    def server_args(self, flags: set[str] | frozenset[str]) -> tuple[list[str], str | None]:
        """The llama-server / llama-cli arguments that select this template, for a tool whose --help lists
        `flags`; and a sentence when the tool cannot be told (else None)."""
        if self.source is TemplateSource.MODEL:
            return [], None  # llama.cpp reads the file's own template; jinja renders it (on by default)
        if "--chat-template" not in flags:
            return [], f"this tool has no --chat-template: it picks its own template, not {self.name}"
        # a built-in name, not a jinja text (see the module docstring)
        args = ["--no-jinja"] if "--no-jinja" in flags else []
        args += ["--chat-template", self.name]
        for stop in self.stop:
            if "-r" in flags:
                args += ["-r", stop.replace("\n", "\\n")]  # llama.cpp unescapes \n in -r
        return args, None

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "name": self.name, "architecture": self.architecture,
                "label": self.label, "why": self.why}


def chat_template_for(metadata: Mapping[str, Any]) -> ChatTemplate:
    """The template for a model, from its GGUF metadata (`tokenizer.chat_template`, `general.architecture`,
    `general.finetune`, `general.name` and `tokenizer.ggml.pre` are read)."""
    arch = str(metadata.get("general.architecture") or "")
    text = metadata.get("tokenizer.chat_template")
    if isinstance(text, str) and text.strip():
        return ChatTemplate(TemplateSource.MODEL, "the model's own", text, arch)
    tuned = " ".join(str(metadata.get(k) or "") for k in ("general.finetune", "general.name"))
    if not _TUNED.search(tuned):
        return ChatTemplate(TemplateSource.BASE, TRANSCRIPT_TEMPLATE, None, arch, (TRANSCRIPT_STOP,))
    name = FAMILY_TEMPLATES.get(arch)
    if arch == "llama" and str(metadata.get("tokenizer.ggml.pre") or "") == "llama-bpe":
        name = "llama3"  # Llama 3's tokenizer; a SentencePiece "llama" is Llama 2 / Mistral / Mixtral: unknown
    if name:
        return ChatTemplate(TemplateSource.FAMILY, name, None, arch)
    return ChatTemplate(TemplateSource.GUESS, DEFAULT_TEMPLATE, None, arch)


_KEYS = ("general.architecture", "general.finetune", "general.name", "tokenizer.chat_template", "tokenizer.ggml.pre")
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types
_STRING, _ARRAY = 8, 9


def _string_keys(path: str, keys: tuple[str, ...] = _KEYS) -> dict[str, str]:
    """The string values of `keys` in a GGUF's metadata, stepping over everything else without decoding it:
    reading a header whole (moetui.model.gguf_header) takes seconds for a 262K-token vocabulary, this takes
    milliseconds. Raises ValueError on a file that is not a well-formed GGUF."""
    out: dict[str, str] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:4] != b"GGUF" or struct.unpack_from("<I", mm, 4)[0] not in (2, 3):
            raise ValueError("not a GGUF file")
        n_kv = struct.unpack_from("<Q", mm, 16)[0]
        pos = 24

        def string() -> bytes:
            nonlocal pos
            n = struct.unpack_from("<Q", mm, pos)[0]
            pos += 8 + n
            if pos > len(mm):
                raise ValueError("truncated")
            return mm[pos - n:pos]

        def skip(vtype: int) -> None:
            nonlocal pos
            if vtype == _STRING:
                pos += 8 + struct.unpack_from("<Q", mm, pos)[0]
            elif vtype == _ARRAY:
                item, n = struct.unpack_from("<IQ", mm, pos)
                pos += 12
                if item in _SCALAR_SIZES:
                    pos += n * _SCALAR_SIZES[item]
                else:
                    for _ in range(n):
                        skip(item)
            elif vtype in _SCALAR_SIZES:
                pos += _SCALAR_SIZES[vtype]
            else:
                raise ValueError(f"unknown GGUF value type {vtype}")
            if pos > len(mm):
                raise ValueError("truncated")

        for _ in range(n_kv):
            key = string().decode("utf-8", "replace")
            vtype = struct.unpack_from("<I", mm, pos)[0]
            pos += 4
            if vtype == _STRING and key in keys:
                out[key] = string().decode("utf-8", "replace")
            else:
                skip(vtype)
    return out


def chat_template_for_file(path: str) -> ChatTemplate | None:
    """The template for the GGUF at `path`; None when the file is not there or not readable (yet)."""
    try:
        return chat_template_for(_string_keys(path))
    except (OSError, ValueError, struct.error):
        return None
