"""Token-by-token text for a streamed completion, at a constant cost per token.

Why not llama-cpp-python's `create_completion(stream=True)`: in 0.3.36 it detokenizes the whole
completion on every token (`all_text = self.detokenize(completion_tokens)`, and `_internals.detokenize`
concatenates bytes one piece at a time), and while the text ends in an incomplete UTF-8 sequence it holds
the tokens back and retries every prefix of them on the next token. A random-weight proxy emits runs of
byte-fallback tokens (`<0xDD><0xDD>...`) that never complete, so the held-back run grows with the reply:
300 sampled tokens of the tiny proxy cost 42,806 detokenize calls (80% of the time), 2,000 took over ten
minutes, and nothing reached the screen until the end. Here each token is turned into bytes once
(`token_to_piece`), an incremental UTF-8 decoder keeps at most three pending bytes (an invalid sequence
becomes U+FFFD at once, as llama.cpp's own server does), and stop strings are searched only in the
unreleased tail, which never exceeds the longest stop string.

The tokens themselves come from `native_tokens` (one `llama_decode` of a one-token batch and one native
sampler call per token, the sampler chain built by llama-cpp-python's own `_init_sampler`, so sampling is
the same) rather than from `Llama.generate`, whose per-token Python (a KV-cache trim, a batch refill, the
generator) cost 10-50% of a tiny model's decode time; the tiny proxy then decodes as fast as `moetui
bench`'s tg (tuning/chat_stream_speed.py). With a draft model `Llama.generate` stays: it owns speculation.
"""

from __future__ import annotations

import codecs
import ctypes
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# create_completion's names for the sampling knobs -> generate()'s
_SAMPLING_NAMES = {"temperature": "temp", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
                   "repeat_penalty": "repeat_penalty"}


class StopScanner:
    """Releases text as soon as it cannot be the start of a stop string; `push` returns (released text,
    stopped). Once a stop string is seen, the text before it is released and nothing after."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def push(self, text: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self.stops:
            return text, False
        buf = self.pending + text
        # a stop string can only start in the held tail or in the new text: search from there
        first = min(((i, s) for s in self.stops if (i := buf.find(s)) >= 0), default=None)
        if first is not None:
            self.stopped, self.pending = True, ""
            return buf[:first[0]], True
        keep = _partial_stop_suffix(buf, self.stops, self.hold)
        self.pending = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


def _partial_stop_suffix(buf: str, stops: list[str], hold: int) -> int:
    """Length of the longest tail of `buf` that is a proper prefix of a stop string."""
    for n in range(min(hold, len(buf)), 0, -1):
        tail = buf[-n:]
        if any(s.startswith(tail) for s in stops):
            return n
    return 0


class TokenText:
    """Bytes of one token at a time -> text, holding back only an incomplete UTF-8 sequence. Each token's
    bytes and end-of-generation flag are asked of llama.cpp once and then kept (two ctypes calls a token
    were ~2% of a tiny model's decode time)."""

    def __init__(self, llm: Any) -> None:
        import llama_cpp  # noqa: PLC0415 - the worker imports llama.cpp lazily; so does this

        self._lib = llama_cpp
        self._vocab = llm._model.vocab
        self._buf = ctypes.create_string_buffer(256)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        n = self._lib.llama_token_to_piece(self._vocab, token, self._buf, len(self._buf), 0, False)
        if n < 0:  # a longer piece than the buffer: grow once, as llama.cpp asks
            self._buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, self._buf, len(self._buf), 0, False)
        self._pieces[token] = out = self._buf.raw[:n]
        return out

    def is_end(self, token: int) -> bool:
        """llama.cpp's end-of-generation test for this token (EOS, EOT, ...)."""
        end = self._eog.get(token)
        if end is None:
            self._eog[token] = end = bool(self._lib.llama_vocab_is_eog(self._vocab, token))
        return end

    def push(self, token: int) -> str:
        return self._decoder.decode(self.piece(token))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


def native_tokens(llm: Any, prompt_tokens: list[int], sampling: dict[str, float],
                  should_stop: Callable[[list[int]], bool] | None = None) -> Iterator[int]:
    """Sampled tokens, one decode each. Keeps llm's own record of the KV cache (input_ids, n_tokens)
    exact, so the next request reuses the common prefix (a chat re-sends its history) as generate() does.
    `should_stop(ids)` is asked after each sample with prompt + generated ids, before the token is handed
    out, like a stopping criterion."""
    import llama_cpp  # noqa: PLC0415

    prefix = 0
    for a, b in zip(llm._input_ids.tolist(), prompt_tokens):
        if a != b:
            break
        prefix += 1
    prefix = max(0, min(prefix, len(prompt_tokens) - 1))  # the last prompt token is decoded again for its logits
    llm._ctx.kv_cache_seq_rm(-1, prefix, -1)
    llm.n_tokens = prefix
    llm.eval(prompt_tokens[prefix:])
    sampler = llm._init_sampler(**sampling)
    ctx, one = llm._ctx.ctx, (llama_cpp.llama_token * 1)()
    batch = llama_cpp.llama_batch_get_one(one, 1)  # a view of `one`: refilled, not rebuilt, per token
    ids = list(prompt_tokens)
    n_ctx, input_ids = llm.n_ctx(), llm.input_ids
    while True:
        token = llama_cpp.llama_sampler_sample(sampler.sampler, ctx, -1)
        if should_stop is not None and should_stop(ids):
            return
        ids.append(token)
        yield token
        if llm.n_tokens >= n_ctx:
            return
        one[0] = token
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        input_ids[llm.n_tokens] = token
        llm.n_tokens += 1


@dataclass
class Completion:
    """What a finished stream says about itself: "stop" (end of generation, a stop string or a stopping
    criterion), "length" (max_tokens or the context) and how many tokens were generated."""

    finish_reason: str = "length"
    n_tokens: int = 0


def stream_completion(llm: Any, prompt_tokens: list[int], *, max_tokens: int, stop: list[str],
                      sampling: dict[str, Any], should_stop: Callable[[Any], bool] | None = None,
                      ended_by_criteria: Callable[[], str] | None = None) -> Iterator[str | Completion]:
    """Yield text pieces as the model generates, then one Completion. Behaves like create_completion:
    same sampling defaults and seed handling, the same "exceeds context" error, max_tokens cut to what
    fits in the context. `should_stop(ids)` is the stopping criterion (ids: prompt + generated so far);
    `ended_by_criteria()` names the finish reason when it ended the stream."""
    n_ctx = llm.n_ctx()
    if len(prompt_tokens) >= n_ctx:
        raise ValueError(f"Requested tokens ({len(prompt_tokens)}) exceed context window of {n_ctx}")
    if max_tokens is None or max_tokens <= 0 or max_tokens + len(prompt_tokens) >= n_ctx:
        max_tokens = n_ctx - len(prompt_tokens)
    seed = sampling.get("seed")
    llm.set_seed(seed if seed is not None else random.Random(llm._seed).randint(0, 2**32))
    kwargs = {_SAMPLING_NAMES[k]: v for k, v in sampling.items() if k in _SAMPLING_NAMES and v is not None}
    text, scanner = TokenText(llm), StopScanner(stop)
    done = Completion()
    if llm.draft_model is not None:
        from llama_cpp import StoppingCriteriaList  # noqa: PLC0415

        criteria = StoppingCriteriaList([lambda ids, _logits: should_stop(ids)]) if should_stop else None
        gen = llm.generate(prompt_tokens, stopping_criteria=criteria, **kwargs)
    else:
        gen = native_tokens(llm, prompt_tokens, kwargs, should_stop)
    try:
        for token in gen:
            if text.is_end(token):
                done.finish_reason = "stop"
                break
            done.n_tokens += 1
            out, stopped = scanner.push(text.push(token))
            if out:
                yield out
            if stopped:
                done.finish_reason = "stop"
                break
            if done.n_tokens >= max_tokens:
                done.finish_reason = "length"
                break
        else:  # generate() returned: a stopping criterion ended it
            done.finish_reason = ended_by_criteria() if ended_by_criteria else "stop"
    finally:
        gen.close()
    if not scanner.stopped:
        out, _ = scanner.push(text.flush())
        out += scanner.flush()
        if out:
            yield out
    yield done
