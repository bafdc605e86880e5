"""The model worker: a child process that owns llama.cpp. Run as `python -m moetui.runtime.worker_main LOG`.

Why a process: llama.cpp answers bad input with abort() (GGML_ASSERT), CUDA OOM can kill the process,
and a wedged decode cannot be interrupted from Python. In a child, all of those become an error event in
the parent, which reads the tail of llama.cpp's log and carries on.

Plumbing: the protocol (JSON lines) runs over the original stdout/stdin; right at start fd 1 and fd 2 are
pointed at LOG, so everything llama.cpp and ggml print (their log callback, fprintf(stderr), GGML_ASSERT
messages) lands in the file the parent reads. Threads: the main thread serves requests one at a time; a
reader thread takes requests off stdin and handles "cancel" at once; a stats thread sends live figures
every STATS_PERIOD_S while a request runs (ctypes releases the GIL inside llama.cpp, so it keeps
ticking); a watchdog exits when the parent is gone, so a worker never outlives its app.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import sys
import threading
import time
from typing import Any, TextIO

import psutil

from moetui.config import RunConfig
from moetui.errors import ErrorKind, ModelFileError, WorkerError, classify_failure, first_line
from moetui.hardware.llama_build import llama_lib_dir
from moetui.hardware.repack import repack_safe
from moetui.runtime.bench import measure
from moetui.runtime.completion_guard import TokenBudget
from moetui.runtime.load_fallback import apply_data_headroom, load_with_fallback
from moetui.runtime.overrides_ctypes import FLASH_ATTN, build_override_array, load_hooks
from moetui.runtime.stats import DecodeRate, parse_load_log, process_vram_bytes
from moetui.runtime.rpc_ctypes import register_servers
from moetui.model.chat_template import chat_template_for
from moetui.runtime.chat_prompt import chat_prompt
from moetui.runtime.streaming import Completion, stream_completion

STATS_PERIOD_S = 0.4
TOKEN_BATCH_S = 0.025  # token text goes out at most every 25 ms: each message wakes the reader (the CLI, the
# TUI on the same cores), whose CPU a CPU-bound model would otherwise use; 25 ms is below what a reader sees


class Worker:
    def __init__(self, out: TextIO, log_path: str) -> None:
        self.out = out
        self.log_path = log_path
        self.send_lock = threading.Lock()
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancel = threading.Event()
        self.llm: Any = None
        self.template: Any = None  # the ChatTemplate chat turns use (moetui.model.chat_template)
        self.draft_llm: Any = None
        self.counting: Any = None
        self.keep_alive: list[Any] = []  # override arrays llama.cpp points into: live as long as the models
        # live-request state, read by the stats thread
        self.req_id: int | None = None
        self.phase = "idle"
        self.t_start = 0.0
        self.t_first: float | None = None
        self.n_prompt = 0
        self.tokens = 0
        self.rate: Any = None
        self.max_tokens = 1 << 62
        self.ppid = os.getppid()

    # --- plumbing -------------------------------------------------------------------------------------
    def send(self, ev: dict[str, Any]) -> None:
        line = json.dumps(ev) + "\n"
        with self.send_lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (BrokenPipeError, OSError):
                os._exit(0)  # the parent is gone

    def read_requests(self, inp: TextIO) -> None:
        for line in inp:
            try:
                req = json.loads(line)
            except json.JSONDecodeError:
                continue
            if req.get("op") == "cancel":
                self.cancel.set()
            else:
                self.requests.put(req)
        os._exit(0)  # stdin closed: the parent is gone or done with us

    def watchdog(self) -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != self.ppid:
                os._exit(0)

    def stats_loop(self) -> None:
        proc = psutil.Process()
        while True:
            time.sleep(STATS_PERIOD_S)
            if self.req_id is None:
                continue
            self.send(self.live_stats(proc, process_vram_bytes))

    def live_stats(self, proc: Any, vram: Any) -> dict[str, Any]:
        now = time.perf_counter()
        ttft = (self.t_first - self.t_start) if self.t_first is not None else None
        return {
            "ev": "stats", "id": self.req_id, "phase": self.phase, "elapsed_s": now - self.t_start,
            "n_prompt": self.n_prompt,
            "prompt_tok_s": (self.n_prompt / ttft) if ttft and self.n_prompt else None,
            # llama-cpp-python samples one token past max_tokens before stopping: never report it
            "tokens": min(self.tokens, self.max_tokens),
            "decode_tok_s": self.rate.instant(now) if self.rate else None,
            "decode_tok_s_avg": self.rate.average() if self.rate else None,
            "rss_bytes": proc.memory_info().rss, "vram_bytes": vram(os.getpid()),
            "draft_proposed": self.counting.proposed if self.counting else 0,
            "draft_accepted": self.counting.accepted if self.counting else 0,
        }

    def log_size(self) -> int:
        sys.stderr.flush()
        sys.stdout.flush()
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        sys.stderr.flush()
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    # --- serving --------------------------------------------------------------------------------------
    def serve(self) -> None:
        self.send({"ev": "ready", "pid": os.getpid()})
        while True:
            req = self.requests.get()
            if req is None:
                return
            op, rid = req.get("op"), req.get("id")
            if op == "shutdown":
                self.send({"ev": "bye", "id": rid})
                return
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                self.send({"ev": "error", "id": rid, "kind": ErrorKind.PROTOCOL, "message": f"unknown request {op!r}"})
                continue
            self.cancel.clear()
            try:
                handler(req)
            except Exception as exc:  # noqa: BLE001 - every failure becomes an event; the parent decides
                self.send({"ev": "error", "id": rid, "kind": classify_failure(exc), "message": error_message(exc)})
            finally:
                self.req_id = None
                self.phase = "idle"

    def begin(self, rid: Any, phase: str) -> None:
        self.t_start = time.perf_counter()
        self.t_first = None
        self.n_prompt = 0
        self.tokens = 0
        self.max_tokens = 1 << 62
        self.rate = DecodeRate()
        self.phase = phase
        self.req_id = rid

    def op_load(self, req: dict[str, Any]) -> None:
        from llama_cpp import Llama  # noqa: PLC0415

        from moetui.runtime.llama_setup import llama_kwargs  # noqa: PLC0415
        from moetui.runtime.speculative import (  # noqa: PLC0415
            CountingDraft, ModelDraft, check_vocab_compatible, prompt_lookup_draft,
        )

        cfg = RunConfig.from_dict(req["config"])
        if not os.path.isfile(cfg.model_path):
            raise ModelFileError(f"{cfg.model_path}: no such model file")

        def adjust(params: Any) -> None:
            params.flash_attn_type = FLASH_ATTN[cfg.flash_attn]

        # a config written for another machine may ask for repacking where it kills the process
        repack = cfg.repack and repack_safe().safe

        t0 = time.perf_counter()
        if cfg.rpc_servers:  # register the RPC servers' devices first: -ts counts them, -ot may name them
            register_servers(",".join(cfg.rpc_servers))
        self.counting = CountingDraft(None) if cfg.draft else None  # the inner draft is set below
        arr = build_override_array(cfg.overrides)
        self.keep_alive.append(arr)
        start = self.log_size()
        apply_data_headroom()

        seen: dict[str, Any] = {}  # the model params llama.cpp got: reported, so a caller can check them

        def load(mode: str) -> Any:
            with load_hooks(arr, mode, adjust, repack, cfg.no_host, seen):
                return Llama(cfg.model_path, draft_model=self.counting, **llama_kwargs(cfg))

        self.llm, fallback = load_with_fallback(cfg.load_mode, load, lambda: self.log_since(start))
        self.template = chat_template_for(self.llm.metadata)
        buffers = parse_load_log(self.log_since(start))
        draft_buffers = None
        if cfg.draft and cfg.draft.kind == "model":
            d = cfg.draft
            if not d.model_path or not os.path.isfile(d.model_path):
                raise ModelFileError(f"{d.model_path}: no such draft model file")
            darr = build_override_array(d.overrides)
            self.keep_alive.append(darr)
            start = self.log_size()
            with load_hooks(darr, cfg.load_mode, adjust, repack, cfg.no_host):
                dcfg = cfg.replace(draft=None, overrides=[])
                self.draft_llm = Llama(d.model_path, **llama_kwargs(dcfg, n_gpu_layers=d.n_gpu_layers, n_ctx=d.n_ctx or cfg.n_ctx))
            draft_buffers = parse_load_log(self.log_since(start))
            check_vocab_compatible(self.llm, self.draft_llm, os.path.basename(d.model_path))
            self.counting.inner = ModelDraft(self.draft_llm, d.draft_max, d.draft_min)
        elif cfg.draft:
            self.counting.inner = prompt_lookup_draft(cfg.draft.draft_max, cfg.draft.draft_min)
        self.send({
            "ev": "loaded", "id": req.get("id"), "load_s": time.perf_counter() - t0, "pid": os.getpid(),
            "n_vocab": self.llm.n_vocab(), "n_ctx": self.llm.n_ctx(), "n_ctx_train": self.llm._model.n_ctx_train(),
            "buffers": buffers.to_dict(), "draft_buffers": draft_buffers.to_dict() if draft_buffers else None,
            "n_threads": self.llm.context_params.n_threads, "n_threads_batch": self.llm.context_params.n_threads_batch,
            "repack": repack, "load_mode_fallback": fallback, "chat_template": self.template.to_dict(),
            "applied": {**seen, **{k: getattr(self.llm.context_params, k)
                                   for k in ("n_ctx", "n_batch", "n_ubatch", "type_k", "type_v", "flash_attn_type")}},
        })

    def _need_model(self) -> None:
        if self.llm is None:
            raise WorkerError("no model loaded", kind=ErrorKind.STATE)

    def _threads(self, req: dict[str, Any]) -> None:
        if req.get("n_threads") or req.get("n_threads_batch"):
            from moetui.runtime.llama_setup import set_threads  # noqa: PLC0415

            set_threads(self.llm, req.get("n_threads"), req.get("n_threads_batch"))

    def op_set_threads(self, req: dict[str, Any]) -> None:
        self._need_model()
        self._threads(req)
        p = self.llm.context_params
        self.send({"ev": "ok", "id": req.get("id"), "n_threads": p.n_threads, "n_threads_batch": p.n_threads_batch})

    def op_reconfigure(self, req: dict[str, Any]) -> None:
        from moetui.runtime.llama_setup import ContextSettings, recreate_context  # noqa: PLC0415

        self._need_model()
        p = self.llm.context_params
        current = {"n_ctx": p.n_ctx, "n_batch": p.n_batch, "n_ubatch": p.n_ubatch, "n_threads": p.n_threads,
                   "n_threads_batch": p.n_threads_batch, **req.get("current", {})}
        settings = ContextSettings(**{**current, **req["settings"]})
        start = self.log_size()
        recreate_context(self.llm, settings)
        self.send({"ev": "ok", "id": req.get("id"), "buffers": parse_load_log(self.log_since(start)).to_dict(),
                   "n_ctx": self.llm.n_ctx()})

    def _stopping(self, budget: Any) -> Any:
        def stop(input_ids: Any) -> bool:
            now = time.perf_counter()
            if self.t_first is None:
                self.t_first = now
                self.n_prompt = len(input_ids)
                self.phase = "generate"
            self.rate.add(now)
            self.tokens += 1
            self._last_ids = input_ids
            # budget: llama-cpp-python's own max_tokens check can be skipped (see completion_guard)
            return budget(input_ids, None) or self.cancel.is_set()

        return stop

    def _complete(self, req: dict[str, Any], prompt_tokens: list[int], stop: list[str]) -> None:
        self._need_model()
        self._threads(req)
        rid = req.get("id")
        self.begin(rid, "prompt")
        self.max_tokens = int(req.get("max_tokens", 256))
        self._last_ids = None
        if self.counting is not None:
            self.counting.reset()
            self.counting.proposed = self.counting.accepted = 0
        sampling = {k: req[k] for k in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed") if req.get(k) is not None}
        text: list[str] = []
        budget = TokenBudget(self.max_tokens, self.llm.n_ctx())
        finish: str | None = None
        unsent: list[str] = []
        last_sent = time.perf_counter()
        for piece in stream_completion(
            self.llm, prompt_tokens, max_tokens=self.max_tokens, stop=stop, sampling=sampling,
            should_stop=self._stopping(budget),
            ended_by_criteria=lambda: "length" if budget.hit else "stop",
        ):
            if isinstance(piece, Completion):
                finish = piece.finish_reason
                continue
            text.append(piece)
            unsent.append(piece)
            if (now := time.perf_counter()) - last_sent >= TOKEN_BATCH_S:
                self.send({"ev": "token", "id": rid, "text": "".join(unsent)})
                unsent.clear()
                last_sent = now
        if unsent:
            self.send({"ev": "token", "id": rid, "text": "".join(unsent)})
        if self.counting is not None and self._last_ids is not None:
            self.counting.finish(self._last_ids)
        final = self.live_stats(psutil.Process(), process_vram_bytes)
        final["phase"] = "done"
        cancelled = self.cancel.is_set()
        self.send({"ev": "done", "id": rid, "text": "".join(text), "finish_reason": "cancelled" if cancelled else finish,
                   "cancelled": cancelled, "stats": final})

    def op_generate(self, req: dict[str, Any]) -> None:
        self._need_model()
        prompt = self.llm.tokenize(str(req["prompt"]).encode("utf-8"), add_bos=True, special=True)
        self._complete(req, prompt, list(req.get("stop") or []))

    def op_chat(self, req: dict[str, Any]) -> None:
        self._need_model()
        prompt = chat_prompt(self.llm, self.template, req["messages"])
        self._complete(req, prompt.tokens, prompt.stop + list(req.get("stop") or []))

    def op_bench(self, req: dict[str, Any]) -> None:
        self._need_model()
        self._threads(req)
        rid = req.get("id")
        self.begin(rid, "bench")
        p = self.llm.context_params

        def progress(kind: str, n: int) -> None:
            self.tokens = n

        pp, tg = measure(self.llm, int(req.get("n_prompt", 512)), int(req.get("n_gen", 128)), int(req.get("reps", 5)),
                         p.n_threads, p.n_threads_batch, progress, self.cancel.is_set)
        self.send({"ev": "bench", "id": rid, "pp_tok_s": pp, "tg_tok_s": tg, "n_threads": p.n_threads,
                   "n_threads_batch": p.n_threads_batch, "n_batch": p.n_batch, "n_ubatch": p.n_ubatch,
                   "cancelled": self.cancel.is_set()})

    # --- test-only requests: make the failure modes the parent must survive happen on demand --------------
    def op_debug_sleep(self, req: dict[str, Any]) -> None:
        self.begin(req.get("id"), "debug")
        time.sleep(float(req.get("seconds", 3600)))
        self.send({"ev": "ok", "id": req.get("id")})

    def op_debug_abort(self, req: dict[str, Any]) -> None:
        base = ctypes.CDLL(os.path.join(llama_lib_dir(), "libggml-base.so"))
        base.ggml_abort(b"moetui-debug.c", 1, b"GGML_ASSERT(%s) failed", b"debug_abort")  # what a real assert does


def error_message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m moetui.runtime.worker_main LOG", file=sys.stderr)
        return 2
    log_path = argv[1]
    proto_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)  # nothing but the protocol may reach the parent's pipe
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace")
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="replace")
    worker = Worker(proto_out, log_path)
    for target, args in ((worker.read_requests, (sys.stdin,)), (worker.watchdog, ()), (worker.stats_loop, ())):
        threading.Thread(target=target, args=args, daemon=True).start()
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
