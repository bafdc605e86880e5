"""A chat turn's prompt tokens, in the template moetui.model.chat_template chose: the file's own jinja
template (rendered the way llama-cpp-python does, in jinja2's immutable sandbox), or a llama.cpp built-in
template rendered by llama.cpp itself (`llama_chat_apply_template`, the very code `llama-server
--chat-template NAME --no-jinja` runs), so Chat, `moetui run` and the exported lines prompt alike."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import jinja2

from moetui.errors import ConfigError, first_line
from moetui.model.chat_template import ChatTemplate


@dataclass
class ChatPrompt:
    tokens: list[int]
    stop: list[str]  # stop strings besides the model's end-of-generation tokens


def _jinja(llm: Any, template: str, messages: list[dict[str, str]]) -> tuple[str, list[str], bool]:
    from llama_cpp import llama_chat_format as cf  # noqa: PLC0415

    eos, bos = llm.token_eos(), llm.token_bos()
    try:  # llama-cpp-python renders it in jinja2's ImmutableSandboxedEnvironment
        fmt = cf.Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )(messages=messages)
    except jinja2.TemplateError as exc:  # SecurityError, UndefinedError, TemplateSyntaxError...
        raise ConfigError(f"the model's chat template cannot be rendered ({type(exc).__name__}: "
                          f"{first_line(exc, 200)})") from None
    stop = fmt.stop if isinstance(fmt.stop, list) else ([fmt.stop] if fmt.stop else [])
    return fmt.prompt, stop, bool(getattr(fmt, "added_special", False))


def _builtin(name: str, messages: list[dict[str, str]]) -> str:
    import llama_cpp  # noqa: PLC0415

    keep = [(m["role"].encode("utf-8"), str(m.get("content") or "").encode("utf-8")) for m in messages]
    chat = (llama_cpp.llama_chat_message * len(keep))(*[llama_cpp.llama_chat_message(r, c) for r, c in keep])
    size = 256 + 2 * sum(len(r) + len(c) for r, c in keep)
    for _ in range(2):  # llama.cpp returns the length it needs when the buffer is too small
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(name.encode(), chat, len(keep), True, buf, size)
        if n < 0:
            raise ConfigError(f"llama.cpp's built-in chat template {name!r} cannot render these messages")
        if n <= size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n
    raise ConfigError(f"llama.cpp's chat template {name!r}: the prompt kept growing")


def chat_prompt(llm: Any, template: ChatTemplate, messages: list[dict[str, str]]) -> ChatPrompt:
    """The tokens of `messages` with the assistant's turn opened, and the stop strings."""
    if template.jinja is not None:
        prompt, stop, added_special = _jinja(llm, template.jinja, messages)
    else:
        prompt, stop, added_special = _builtin(template.name, messages), list(template.stop), False
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=not added_special, special=True)
    return ChatPrompt(tokens, stop)
