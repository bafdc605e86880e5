"""Prompt processing (pp) and generation (tg) speed, measured the way llama.cpp's llama-bench does, so
the two agree on the same model and settings:

- pp N: from an empty KV cache, decode N random tokens (BOS first when the vocab adds one) in n_batch
  chunks; time to the last synchronize.
- tg N: from an empty KV cache, decode N tokens one at a time, each a random token, synchronizing after
  each (no sampling cost: like llama-bench, it times the model, not the sampler).
- one warmup of each first; the KV cache is cleared before every repetition.

`measure()` runs inside the worker (it needs the loaded Llama); `BenchResult` crosses the pipe.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass
class BenchResult:
    n_prompt: int
    n_gen: int
    reps: int
    pp_tok_s: list[float] = field(default_factory=list)  # one figure per repetition
    tg_tok_s: list[float] = field(default_factory=list)
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_batch: int | None = None
    n_ubatch: int | None = None
    flash_attn: str | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None

    @staticmethod
    def _median(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    @staticmethod
    def _stdev(xs: list[float]) -> float | None:
        return statistics.stdev(xs) if len(xs) > 1 else (0.0 if xs else None)

    @property
    def pp_median(self) -> float | None:
        return self._median(self.pp_tok_s)

    @property
    def tg_median(self) -> float | None:
        return self._median(self.tg_tok_s)

    @property
    def pp_stdev(self) -> float | None:
        return self._stdev(self.pp_tok_s)

    @property
    def tg_stdev(self) -> float | None:
        return self._stdev(self.tg_tok_s)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("pp", "tg"):
            xs = getattr(self, f"{k}_tok_s")
            d[f"{k}_median"] = self._median(xs)
            d[f"{k}_stdev"] = self._stdev(xs)
            d[f"{k}_min"] = min(xs) if xs else None
            d[f"{k}_max"] = max(xs) if xs else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchResult":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


def measure(
    llm: Any,
    n_prompt: int,
    n_gen: int,
    reps: int,
    n_threads: int,
    n_threads_batch: int,
    on_progress: Callable[[str, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[float], list[float]]:
    """Run pp and tg on a loaded llama_cpp.Llama; returns (pp tok/s per rep, tg tok/s per rep)."""
    from llama_cpp import llama_cpp as L  # noqa: PLC0415 - worker-only

    ctx = llm._ctx.ctx
    mem = L.llama_get_memory(ctx)
    vocab = llm._model.vocab
    n_vocab = L.llama_vocab_n_tokens(vocab)
    bos = L.llama_vocab_bos(vocab) if L.llama_vocab_get_add_bos(vocab) else None
    n_batch = llm.context_params.n_batch
    rng = random.Random(0)
    buf = (L.llama_token * max(n_batch, 1))()

    def decode(n: int) -> None:
        rc = L.llama_decode(ctx, L.llama_batch_get_one(buf, n))
        if rc != 0:
            raise RuntimeError(f"llama_decode failed during the benchmark (code {rc})")

    def pp(n: int) -> None:
        done = 0
        while done < n:
            k = min(n - done, n_batch)
            for i in range(k):
                buf[i] = rng.randrange(n_vocab)
            if done == 0 and bos is not None:
                buf[0] = bos
            decode(k)
            done += k
        L.llama_synchronize(ctx)

    def tg(n: int) -> None:
        buf[0] = bos if bos is not None else rng.randrange(n_vocab)
        for i in range(n):
            decode(1)
            L.llama_synchronize(ctx)
            buf[0] = rng.randrange(n_vocab)
            if on_progress is not None:
                on_progress("tg", i + 1)

    L.llama_set_n_threads(ctx, n_threads, n_threads_batch)
    pp_rates: list[float] = []
    tg_rates: list[float] = []
    try:
        if n_prompt > 0:
            L.llama_memory_clear(mem, False)
            pp(n_prompt)  # warmup
            for _ in range(reps):
                if should_stop and should_stop():
                    break
                L.llama_memory_clear(mem, False)
                t0 = time.perf_counter()
                pp(n_prompt)
                pp_rates.append(n_prompt / (time.perf_counter() - t0))
                if on_progress is not None:
                    on_progress("pp", n_prompt)
        if n_gen > 0:
            L.llama_memory_clear(mem, False)
            tg(1)  # warmup
            for _ in range(reps):
                if should_stop and should_stop():
                    break
                L.llama_memory_clear(mem, False)
                t0 = time.perf_counter()
                tg(n_gen)
                tg_rates.append(n_gen / (time.perf_counter() - t0))
    finally:
        # the KV cache no longer holds what Llama thinks it holds: start the next request from scratch
        L.llama_memory_clear(mem, True)
        llm.reset()
        llm._requires_eval = True
    return pp_rates, tg_rates
