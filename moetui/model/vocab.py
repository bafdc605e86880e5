"""A synthetic SentencePiece-style vocabulary that llama.cpp accepts: control tokens, ChatML markers, 256
byte-fallback tokens, then deterministic word pieces up to the requested size. The same size always gives
the same tokens, so a draft proxy and its target share a vocabulary exactly; a nonzero `variant` gives a
vocabulary of the same size whose word pieces differ (to test that a mismatched draft is refused)."""

from __future__ import annotations

import itertools
import string
from typing import Any

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_COMMON = ("the of and to in is it that for you was with on as are be this have from or one had by word but "
           "not what all were we when your can said there use an each which she do how their if will up other "
           "about out many then them these so some her would make like him into time has look two more write "
           "go see number no way could people my than first water been call who oil its now find long down day "
           "did get come made may part hello world model token expert layer fast speed memory").split()


def _pieces() -> Any:
    for w in _COMMON:
        yield "▁" + w
        yield w
    letters = string.ascii_lowercase
    for c in string.ascii_letters + string.digits + string.punctuation:
        yield c
        yield "▁" + c
    for n in itertools.count(2):
        for combo in itertools.product(letters, repeat=n):
            w = "".join(combo)
            yield "▁" + w
            yield w


def make_vocab(n_vocab: int, variant: int = 0) -> dict[str, Any]:
    """variant k > 0 leaves out the first k word pieces: the control and byte tokens stay the same (so
    the tokenizer still loads and BOS/EOS match), every later token id names another piece."""
    if n_vocab < len(SPECIAL) + 256 + 16:
        raise ValueError(f"vocabulary of {n_vocab} is too small (needs > {len(SPECIAL) + 256 + 16})")
    if variant < 0:
        raise ValueError(f"vocabulary variant must be >= 0, not {variant}")
    tokens = list(SPECIAL)
    types = [UNKNOWN, CONTROL, CONTROL, CONTROL, CONTROL]
    tokens += [f"<0x{i:02X}>" for i in range(256)]
    types += [BYTE] * 256
    seen = set(tokens)
    for piece in itertools.islice(_pieces(), variant, None):
        if len(tokens) >= n_vocab:
            break
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece)
        types.append(NORMAL)
    scores = [0.0] * (len(SPECIAL) + 256) + [-float(i) for i in range(n_vocab - len(SPECIAL) - 256)]
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 4,  # <|im_end|> ends a chat turn
        "tokenizer.ggml.padding_token_id": 2,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.chat_template": CHATML_TEMPLATE,
    }
