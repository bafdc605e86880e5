"""Measured RAM bandwidth: a multithreaded numpy copy and read probe, under a second, cached per rig with
the time it was measured and re-checked at each detection (see "per-rig cache" below).

Why measured: decode speed of the CPU-resident part of an MoE model is bound by how fast the cores
can stream expert weights out of RAM, and the usable figure is well below the DIMMs' theoretical
peak (and unknowable without root anyway). numpy's copy and reductions release the GIL, so plain
threads give real parallel memory traffic.

Method (STREAM-like): each thread allocates and first-touches its own buffers (first touch places
pages on the thread's NUMA node), then all threads copy src->dst for a fixed window, then all
threads read (max-reduce) src for a window. Copy counts read + write bytes, as STREAM does (the
write-allocate read is not counted). The source buffer is L3_MULTIPLE times the L3 (at least 128 MiB,
at most 4 GiB) so caches cannot serve it. Checked on the lent H100 box (16 cores, 300 MiB L3): this
short probe read 117 GB/s where the same code over 16 GiB for 2 s read 128, numpy's max over 16 GiB 125
and sysbench 90 (tuning/results/ram_bandwidth.md): 4x is not flattered by the cache, and 16x would
cost more page faulting than the budget allows on slow-faulting VMs (0.3-2 GB/s on the dev VM).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any, Callable

from moetui.hardware.rig import BandwidthResult
from moetui.paths import atomic_write_json, cache_dir, expect, finite, load_state

CACHE_FILE = "ram_bandwidth.json"
CACHE_MAX_AGE_S = 30 * 86400
L3_MULTIPLE = 4
# Per-call slice: each call is ~10 ms of streaming, so a thread sees its deadline soon after it passes,
# while GIL hand-offs between calls stay rare (each one can wait for a descheduled thread on a busy box).
SLICE_BYTES = 64 * 2**20
# Share of the budget that allocation + first touch may take before the buffer is cut to what is touched.
TOUCH_SHARE = 0.4
MIN_TOUCH_BYTES = 64 * 2**20


def _plan(threads: int | None, buffer_bytes: int | None, physical_cores: int, l3_bytes: int | None, available: int | None) -> tuple[int, int]:
    n = threads or max(1, min(physical_cores, 64))
    if buffer_bytes is None:
        buffer_bytes = max(128 * 2**20, L3_MULTIPLE * (l3_bytes or 0))
        buffer_bytes = min(buffer_bytes, 4 * 2**30)
        if available:
            buffer_bytes = min(buffer_bytes, available // 8)  # src + dst stay under a quarter of free RAM
    per = max(8 * 2**20, buffer_bytes // n)
    return n, per


def measure_ram_bandwidth(
    *,
    seconds: float = 0.4,
    budget_s: float = 0.9,
    threads: int | None = None,
    buffer_bytes: int | None = None,
    physical_cores: int = 1,
    l3_bytes: int | None = None,
    available_bytes: int | None = None,
    stop: threading.Event | None = None,
) -> BandwidthResult:
    """Run the probe. `seconds` is the measuring time (split between copy and read); allocation and
    first touch come on top, in parallel across threads. `budget_s` caps the whole probe (0.9 s leaves
    slack under the promised 1 s for threads winding down on a busy machine): when page faulting the
    buffers is slow (memory pressure), the measuring windows shrink, to 0.05 s each at the least.
    `stop` lets a caller (the TUI) cancel; Ctrl-C also cancels. An interrupted probe returns what it measured with interrupted=True."""
    # numpy: loaded when this runs, not at start-up
    import numpy as np

    n, per = _plan(threads, buffer_bytes, physical_cores, l3_bytes, available_bytes)
    stop = stop or threading.Event()
    result = BandwidthResult(threads=n, buffer_bytes=n * per)
    t_start = time.perf_counter()
    ready = threading.Barrier(n + 1)
    phase_go = [threading.Event(), threading.Event()]
    deadlines = [0.0, 0.0]
    done_bytes = [[0, 0] for _ in range(n)]
    end_times = [[0.0, 0.0] for _ in range(n)]
    errors: list[BaseException] = []

    touch_deadline = t_start + TOUCH_SHARE * budget_s
    touched = [0] * n

    def worker(k: int) -> None:
        step = max(1, SLICE_BYTES // 8)
        try:
            src = np.empty(per // 8, dtype=np.float64)
            dst = np.empty_like(src)
            # First touch (page faults) in slices against a deadline: on a slow-faulting VM faulting
            # 2 x 1.2 GiB took longer than the whole 1 s budget. The probe then streams over the part it
            # touched, never less than MIN_TOUCH_BYTES per thread.
            n_el = 0
            while n_el < src.size:
                j = min(src.size, n_el + step)
                src[n_el:j] = 1.0
                dst[n_el:j] = 0.0
                n_el = j
                if time.perf_counter() >= touch_deadline and n_el * 8 >= MIN_TOUCH_BYTES:
                    break
            src, dst = src[:n_el], dst[:n_el]
            touched[k] = n_el * 8
        except BaseException as exc:  # MemoryError
            errors.append(exc)
            ready.abort()
            return
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        # Work in slices so a thread notices its deadline within a few ms: a whole-buffer pass is
        # tens of ms, and on a busy machine the overshoot of the last pass broke the 1 s budget.
        n_el = src.size
        for phase in (0, 1):
            phase_go[phase].wait()
            dl = deadlines[phase]
            i = 0
            while not stop.is_set():
                j = min(n_el, i + step)
                if phase == 0:
                    np.copyto(dst[i:j], src[i:j])
                    done_bytes[k][0] += 2 * (j - i) * src.itemsize
                else:
                    src[i:j].max()
                    done_bytes[k][1] += (j - i) * src.itemsize
                i = 0 if j >= n_el else j
                if time.perf_counter() >= dl:
                    break
            end_times[k][phase] = time.perf_counter()

    starts = [0.0, 0.0]
    pool = [threading.Thread(target=worker, args=(k,), daemon=True, name=f"moetui-bw-{k}") for k in range(n)]
    try:
        for t in pool:
            t.start()
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            raise MemoryError(f"could not allocate {n * per * 2 // 2**20} MiB for the probe") from (errors[0] if errors else None)
        left = budget_s - (time.perf_counter() - t_start) - 0.05  # 0.05 s: thread wind-down
        window = max(0.05, min(seconds / 2, left / 2))
        for phase in (0, 1):
            starts[phase] = time.perf_counter()
            deadlines[phase] = starts[phase] + window
            phase_go[phase].set()
            if phase == 0:
                # wait for every thread to finish copying before the read phase starts
                while any(end_times[k][0] == 0.0 for k in range(n)) and not stop.is_set():
                    time.sleep(0.002)
        for t in pool:
            while t.is_alive():
                t.join(0.05)
    except KeyboardInterrupt:
        stop.set()
        result.interrupted = True
        for ev in phase_go:
            ev.set()
        ready.abort()
        for t in pool:
            t.join(1.0)
    if stop.is_set():
        result.interrupted = True
    for phase, attr in ((0, "copy_gbs"), (1, "read_gbs")):
        ends = [end_times[k][phase] for k in range(n)]
        total = sum(done_bytes[k][phase] for k in range(n))
        if total and starts[phase] and all(ends):
            dt = max(ends) - starts[phase]
            if dt > 0:
                setattr(result, attr, round(total / dt / 1e9, 1))
    if all(touched):
        result.buffer_bytes = sum(touched)  # what was really streamed (the touch deadline may cut it)
    result.seconds = round(time.perf_counter() - t_start, 3)
    return result


# ---- per-rig cache -----------------------------------------------------------------------------
#
# A figure measured while something else streamed memory (a build, another model, a colleague's job) reads
# low: 9 GB/s one time, 24 the next, and every CPU-side prediction with it. So a cached figure is not
# trusted blindly: each detection runs a quick check (~0.3 s). When the check reads far more than the cache
# (DISTURBED_RATIO), the cached figure was the disturbed one: measure again, keep the better. When it reads
# far less, the machine is busy now: keep the cached figure (what the rig does when idle) and say so.


def _cache_path() -> Any:
    return cache_dir() / CACHE_FILE


DISTURBED_RATIO = 1.5  # a check this many times off the cached figure disagrees strongly (noise is ~10-20 %)
CHECK_SECONDS = 0.1  # the quick check's measuring time and whole budget
CHECK_BUDGET_S = 0.3


MAX_GBS = 100_000.0  # GB/s: 20x the fastest memory of any machine (HBM3e stacks are ~5,000)


def _check_cache(data: Any) -> dict[str, Any]:
    """Every entry as store_cached writes it: finite times, GB/s figures from 0 to MAX_GBS."""
    expect(isinstance(data, dict), "not a JSON object")
    for key, entry in data.items():
        expect(isinstance(entry, dict) and isinstance(entry.get("result"), dict), f"entry {key[:40]!r} is not an object")
        finite(entry.get("measured_at"), 0, 1e11, f"{key[:40]}.measured_at")
        finite(entry.get("checks", 0), 0, 1e9, f"{key[:40]}.checks")
        result = entry["result"]
        for name in ("copy_gbs", "read_gbs", "check_gbs"):
            finite(result.get(name), 0, MAX_GBS, f"{key[:40]}.{name}", optional=True)
        for name in ("threads", "buffer_bytes", "seconds"):
            finite(result.get(name, 0), 0, 1e15, f"{key[:40]}.{name}")
    return data


def _read_cache() -> dict[str, Any]:
    return load_state(_cache_path(), "RAM bandwidth cache", _check_cache) or {}


def load_cached(key: str, *, max_age_s: float = CACHE_MAX_AGE_S, now: Callable[[], float] = time.time) -> BandwidthResult | None:
    try:
        entry = _read_cache()[key]
        measured_at = float(entry["measured_at"])
        if now() - measured_at > max_age_s:
            return None
        r = BandwidthResult(**{k: v for k, v in entry["result"].items() if k in BandwidthResult.__dataclass_fields__})
        r.cached, r.measured_at, r.checks = True, measured_at, int(entry.get("checks", 0))
        r.check_gbs, r.note, r.interrupted = None, "", False
        return r
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store_cached(key: str, result: BandwidthResult, *, now: Callable[[], float] = time.time) -> None:
    """Keep `result` as this rig's figure; its measured_at (now, when unset) says when it was measured."""
    data = _read_cache()
    if result.measured_at is None:
        result.measured_at = now()
    d = asdict(result)
    d.update(cached=False, check_gbs=None, note="")
    data[key] = {"measured_at": result.measured_at, "checks": result.checks, "result": d}
    try:
        atomic_write_json(_cache_path(), data)
    except OSError:
        pass  # a read-only cache dir only costs a re-measure next time


def _checked(key: str, hit: BandwidthResult, check: BandwidthResult | None, now: Callable[[], float],
             measure: Callable[[], BandwidthResult], warnings: list[str]) -> BandwidthResult:
    """The cached figure after this start's quick check (see the comment above)."""
    cached_gbs = hit.best_gbs or 0.0
    got = check.best_gbs if check is not None and not check.interrupted else None
    if not got:
        return hit  # no check (failed, cancelled): the cached figure as it is
    hit.check_gbs = got
    if got >= cached_gbs * DISTURBED_RATIO:
        try:
            fresh = measure()
        except (MemoryError, ImportError, RuntimeError, OSError):
            fresh = None
        if fresh is None or fresh.interrupted or not fresh.best_gbs:
            return hit
        was = f"{cached_gbs:.1f} GB/s, measured {ago(now() - (hit.measured_at or now()))}"
        if fresh.best_gbs > cached_gbs:
            fresh.measured_at, fresh.check_gbs = now(), got
            fresh.note = f"re-measured: the cached figure ({was}) looked disturbed, a quick check read {got:.1f}"
            store_cached(key, fresh, now=now)
            return fresh
        hit.note = f"re-measured ({fresh.best_gbs:.1f} GB/s): the cached {cached_gbs:.1f} is the better figure, kept"
        return hit
    if got * DISTURBED_RATIO <= cached_gbs:
        # no "N min ago" here: the note is kept and shown later, beside the figure's own date read from the clock
        # then (a frozen "5 min ago" stood under a live "9 min ago" for the same measurement)
        hit.note = (f"RAM busy now: a quick check read {got:.1f} GB/s; plans use the {cached_gbs:.1f} GB/s of the "
                    "earlier measurement")
        warnings.append(hit.note)
        return hit
    hit.checks += 1
    store_cached(key, hit, now=now)  # keeps measured_at: the figure is the old one, confirmed once more
    hit.cached = True
    return hit


def ram_bandwidth(
    key: str,
    *,
    use_cache: bool = True,
    physical_cores: int = 1,
    l3_bytes: int | None = None,
    available_bytes: int | None = None,
    warnings: list[str] | None = None,
    stop: threading.Event | None = None,
    check: bool = True,
    now: Callable[[], float] = time.time,
) -> BandwidthResult | None:
    """Measured RAM bandwidth for this rig (`key` = the hardware fingerprint), from the cache when one is
    there and a quick check (`check`) agrees with it, measured afresh otherwise. Never raises."""
    warnings = warnings if warnings is not None else []

    def measure(**kw: Any) -> BandwidthResult:
        return measure_ram_bandwidth(physical_cores=physical_cores, l3_bytes=l3_bytes,
                                     available_bytes=available_bytes, stop=stop, **kw)

    if use_cache:
        hit = load_cached(key, now=now)
        if hit is not None and hit.best_gbs:
            if not check:
                return hit
            try:
                quick: BandwidthResult | None = measure(seconds=CHECK_SECONDS, budget_s=CHECK_BUDGET_S)
            except (MemoryError, ImportError, RuntimeError, OSError):
                quick = None
            return _checked(key, hit, quick, now, measure, warnings)
    try:
        r = measure()
    except (MemoryError, ImportError, RuntimeError, OSError) as exc:
        warnings.append(f"RAM bandwidth: probe failed ({exc})")
        return None
    if r.interrupted:
        warnings.append("RAM bandwidth: probe interrupted; figure is partial and not cached")
        return r
    if r.best_gbs:
        r.measured_at = now()
        store_cached(key, r, now=now)
    else:
        warnings.append("RAM bandwidth: probe measured nothing")
    return r


# ---- in words ----------------------------------------------------------------------------------


def ago(seconds: float) -> str:
    """'just now', '5 min ago', '2 h ago', '3 days ago'."""
    s = max(0.0, seconds)
    if s < 60:
        return "just now"
    if s < 3600:
        return f"{s // 60:.0f} min ago"
    if s < 2 * 86400:
        return f"{s // 3600:.0f} h ago"
    return f"{s // 86400:.0f} days ago"


def bandwidth_words(gbs: float | None, probe: BandwidthResult | None, source: str = "detected", *,
                    now: float | None = None) -> str:
    """The RAM bandwidth figure with when it was measured: '24.1 GB/s, measured 2 h ago'."""
    if not gbs:
        return "unknown"
    if source == "preset" or probe is None:  # a reference rig's typical figure: no measurement to date
        return f"{gbs:.1f} GB/s"
    if probe.interrupted:
        return f"{gbs:.1f} GB/s, partial (the probe was interrupted)"
    when = ago((now if now is not None else time.time()) - probe.measured_at) if probe.measured_at else "just now"
    return f"{gbs:.1f} GB/s, measured {when}"


def bandwidth_how(probe: BandwidthResult) -> str:
    """How the figure was measured: '16 threads copying and reading 1.0 GiB; confirmed by 2 quick checks since'."""
    text = f"{probe.threads} threads copying and reading {probe.buffer_bytes / 2**30:.1f} GiB"
    if probe.checks:
        text += f"; confirmed by {probe.checks} quick check{'s' if probe.checks > 1 else ''} since"
    return text
