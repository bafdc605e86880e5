"""The search: which dimensions, in what order, which candidates, and the walk that keeps or drops each.

Coordinate descent from the plan: every dimension that applies proposes candidates built on the incumbent
(the best config so far); each is compared with the incumbent side by side (duel.py) and replaces it when
better beyond the noise, or when tied and simpler (fewer settings changed from llama.cpp's defaults). A
round that changes nothing ends the search ("converged"); a dimension is searched again only when a
setting it interacts with changed. The order of dimensions follows what the speed model says the
workload waits on: with experts in RAM and a prompt-heavy turn, load mode, repack and ubatch (how fast
expert weights reach the GPU) before placement and threads; for decode, placement and threads first.

It talks to its runner only through new_probe / open / turn / close / known / out_of_budget / emit /
cheap_switch, so tests drive it with a fake world (tests/test_tuner_search.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from moetui.config import DraftConfig, RunConfig
from moetui.tuner.duel import Runner, duel
from moetui.tuner.events import ProbesCompared, TuneEvent, TuneProgress
from moetui.tuner.options import DIMENSION_WORDS
from moetui.tuner.evidence import Decision, Verdict
from moetui.tuner.placement_axis import AXIS_KEYS, BETTER, FAILED, SAME, STOP, WORSE, PlacementAxis, walk
from moetui.tuner.probe import Probe, ProbeRole, ProbeStatus
from moetui.tuner.scoring import Objective

UBATCHES = (128, 256, 512, 1024, 2048, 4096)
MAX_ROUNDS = 3
PROMPT_HEAVY = 0.5  # the prompt's share of a turn above which prompt-side settings are searched first

# which dimensions' best value may move when another's changes (memory, compute or thread contention)
INTERACTS: dict[str, set[str]] = {
    "placement": {"ubatch", "cache_type", "flash_attn", "load_mode", "repack"},
    "threads": {"placement", "load_mode", "ubatch", "repack"},
    "ubatch": {"placement", "threads", "flash_attn", "cache_type", "load_mode", "repack"},
    "flash_attn": {"cache_type", "ubatch", "placement"},
    "cache_type": {"flash_attn", "placement"},
    "load_mode": {"placement", "repack", "ubatch"},
    "repack": {"placement", "load_mode", "ubatch", "threads"},
}


def config_changes(a: RunConfig, b: RunConfig) -> dict[str, Any]:
    """`b`'s settings that differ from `a`'s, in a probe's `changes` vocabulary."""
    out: dict[str, Any] = {}
    for k in ("n_gpu_layers", "n_threads", "n_threads_batch", "n_ubatch", "n_batch", "flash_attn", "load_mode",
              "repack"):
        if getattr(a, k) != getattr(b, k):
            out[k] = getattr(b, k)
    if (a.cache_type_k, a.cache_type_v) != (b.cache_type_k, b.cache_type_v):
        out["cache_type"] = b.cache_type_k if b.cache_type_k == b.cache_type_v else f"{b.cache_type_k}/{b.cache_type_v}"
    if a.overrides != b.overrides:
        out["overrides"] = len(b.overrides)
    return out


def changed_dimensions(a: RunConfig, b: RunConfig) -> set[str]:
    """The tuning dimensions in which two configs differ."""
    pairs = {
        "placement": ((a.overrides, a.n_gpu_layers), (b.overrides, b.n_gpu_layers)),
        "threads": ((a.n_threads, a.n_threads_batch), (b.n_threads, b.n_threads_batch)),
        "ubatch": ((a.n_ubatch, a.n_batch), (b.n_ubatch, b.n_batch)),
        "flash_attn": (a.flash_attn, b.flash_attn),
        "cache_type": ((a.cache_type_k, a.cache_type_v), (b.cache_type_k, b.cache_type_v)),
        "load_mode": (a.load_mode, b.load_mode),
        "repack": (a.repack, b.repack),
        "draft": (a.draft, b.draft),
    }
    return {d for d, (x, y) in pairs.items() if x != y}


def order_dimensions(dims: Iterable[str], prompt_share: float, experts_in_ram: bool, gpu: bool) -> list[str]:
    """The dimensions in the order the workload's wait says matters most (draft always last: it is timed
    by generation, once, on the winner)."""
    prompt_heavy = prompt_share >= PROMPT_HEAVY
    if gpu and experts_in_ram:
        # prompts: experts stream to the GPU once per ubatch, from pinned (load mode none), unrepacked
        # buffers fastest; decode: where the experts live and the CPU threads that run them
        first = (("load_mode", "repack", "ubatch", "placement", "threads") if prompt_heavy
                 else ("placement", "threads", "load_mode", "ubatch", "repack"))
    elif gpu:
        first = ("placement", "ubatch", "flash_attn") if prompt_heavy else ("placement", "flash_attn", "threads")
    else:  # everything on the CPU: the threads first, then how the weights sit in RAM
        first = ("threads", "repack", "ubatch", "load_mode") if prompt_heavy else ("threads", "load_mode", "repack")
    dims = list(dims)
    out = [d for d in first if d in dims]
    out += [d for d in dims if d not in out and d != "draft"]
    return out + (["draft"] if "draft" in dims else [])


@dataclass
class SearchSpace:
    """What the rig and the options allow (the engine fills it in)."""

    dimensions: list[str]  # in search order
    objective: Objective
    defaults: RunConfig  # llama.cpp's defaults: a config closer to them is simpler
    n_prompt: int  # the measured prompt length: a ubatch at or above it is one ubatch, nothing to see
    cores: int = 1
    logical_cores: int = 1
    gpu_offload: bool = False
    axis: PlacementAxis | None = None
    mlock_possible: bool = False
    draft_path: str | None = None
    max_rounds: int = 8
    reps: int = 3


class SearchRunner(Runner, Protocol):
    best: Probe | None
    probes: list[Probe]

    def new_probe(self, config: RunConfig, changes: dict[str, Any], role: ProbeRole = ...,
                  label: str | None = None) -> Probe: ...

    def open(self, probe: Probe) -> bool: ...

    def close(self, probe: Probe) -> None: ...

    def known(self, cfg: RunConfig) -> Probe | None: ...

    def emit(self, ev: TuneEvent) -> None: ...

    def fraction(self) -> float: ...

    def elapsed(self) -> float: ...

    def eta(self) -> float | None: ...


@dataclass
class Search:
    runner: SearchRunner
    space: SearchSpace
    incumbent: Probe | None = None
    decisions: list[Decision] = field(default_factory=list)

    def complexity(self, cfg: RunConfig) -> int:
        return len(changed_dimensions(self.space.defaults, cfg))

    def _set_incumbent(self, p: Probe) -> None:
        self.incumbent = p
        self.runner.best = p

    def consider(self, cfg: RunConfig, changes: dict[str, Any], dimension: str, *, generate: bool = False,
                 role: ProbeRole = ProbeRole.SEARCH, label: str | None = None) -> str:
        """Measure one candidate against the incumbent; BETTER (it replaced it) / SAME (a tie) / WORSE /
        FAILED, or STOP when the budget is spent."""
        r = self.runner
        if r.out_of_budget():
            return STOP
        seen = r.known(cfg)
        if seen is not None:  # measured already, from this incumbent or another
            return SAME if seen is self.incumbent else (WORSE if seen.ok else FAILED)
        probe = r.new_probe(cfg, changes, role, label)
        if not r.open(probe):
            return FAILED
        inc = self.incumbent
        if inc is None:  # nothing ran yet (the plan failed): the first config that runs leads
            r.turn(probe, self.space.reps, generate=generate)
            r.close(probe)
            if probe.ok:
                self._set_incumbent(probe)
                return BETTER
            return FAILED
        again = Probe(inc.index, inc.config, dict(inc.changes), inc.label, status=ProbeStatus.RUNNING, role=inc.role)
        d = duel(r, again, probe, self.space.objective, dimension=dimension, max_rounds=self.space.max_rounds,
                 candidate_simpler=self.complexity(cfg) < self.complexity(inc.config), generate=generate)
        self.decisions.append(d)
        if d.kept == "candidate":
            self._set_incumbent(probe)
        r.close(probe)
        r.emit(ProbesCompared(d))
        if d.verdict == Verdict.FAILED:
            return FAILED
        if d.verdict == Verdict.BETTER:
            return BETTER
        return WORSE if d.verdict == Verdict.WORSE else SAME

    def _with(self, changes: dict[str, Any], **settings: Any) -> tuple[RunConfig, dict[str, Any]]:
        assert self.incumbent is not None
        ch = {**self.incumbent.changes, **changes}
        return self.incumbent.config.replace(**settings), ch

    def _try(self, dimension: str, settings: Iterable[dict[str, Any]]) -> None:
        for s in settings:
            if self.consider(*self._with(s, **s), dimension) == STOP:
                return

    # --- the walk over dimensions ---------------------------------------------------------------------
    def run(self) -> str:
        dims = self.space.dimensions
        r = self.runner
        r.emit(TuneProgress(r.fraction(), r.elapsed(), r.eta(), "searching: " + ", ".join(DIMENSION_WORDS.get(d, d) for d in dims)))
        if self.incumbent is None and "placement" not in dims:
            return "exhausted"  # the plan and the defaults failed and nothing else can make it fit
        searched_from: dict[str, RunConfig | None] = {}
        for _ in range(MAX_ROUNDS):
            before = self.incumbent
            for dim in [d for d in dims if d != "draft"]:
                if r.out_of_budget():
                    return "budget"
                if dim in searched_from and not self._worth_again(dim, searched_from[dim]):
                    continue
                searched_from[dim] = self.incumbent.config if self.incumbent else None
                if dim == "placement" or self.incumbent is not None:
                    getattr(self, f"_dim_{dim}")()
            if r.out_of_budget():
                return "budget"
            if self.incumbent is before:
                break
        if "draft" in dims and self.incumbent is not None:
            self._dim_draft()
            if r.out_of_budget():
                return "budget"
        return "converged"

    def _worth_again(self, dim: str, searched_from: RunConfig | None) -> bool:
        if self.incumbent is None or searched_from is None:
            return True
        return bool(changed_dimensions(searched_from, self.incumbent.config) & INTERACTS.get(dim, set()))

    def _dim_placement(self) -> None:
        axis = self.space.axis
        base = self.incumbent.config if self.incumbent else None
        if base is None:
            base = self.runner.probes[0].config
        pos0 = axis.position(base) if axis else None
        if axis is None or pos0 is None:
            return

        def try_pos(pos: int) -> str:
            cfg_base = self.incumbent.config if self.incumbent else base
            ch = {k: v for k, v in (self.incumbent.changes if self.incumbent else {}).items()
                  if k not in AXIS_KEYS}
            ch.update(axis.describe(pos))
            return self.consider(axis.config_at(cfg_base, pos), ch, "placement")

        def best_pos() -> int | None:
            return axis.position(self.incumbent.config) if self.incumbent else None

        walk(pos0, self.incumbent is not None, axis.per_layer, axis.max, try_pos, best_pos)

    def _dim_threads(self) -> None:
        s = self.space
        cores, logical = max(1, s.cores), max(s.cores, s.logical_cores)
        cands: list[int] = []
        for t in (cores, max(1, cores // 2), logical, cores - 1, 1 if cores <= 4 else cores // 4):
            if t >= 1 and t not in cands:
                cands.append(t)
        self._try("threads", ({"n_threads": t, "n_threads_batch": t} for t in cands))
        # decode threads and batch threads are separate settings: combine the best of each
        measured = [p for p in self.runner.probes if p.ok and p.role != ProbeRole.FINAL
                    and changed_dimensions(p.config, self.incumbent.config) <= {"threads"}]
        if len(measured) >= 2:
            t_tg = max(measured, key=lambda p: p.tg or 0.0).config.n_threads
            t_pp = max(measured, key=lambda p: p.pp or 0.0).config.n_threads
            if t_tg != t_pp and t_tg and t_pp:
                self._try("threads", [{"n_threads": t_tg, "n_threads_batch": t_pp}])

    def _dim_ubatch(self) -> None:
        assert self.incumbent is not None
        base = self.incumbent.config
        # a ubatch of the measured prompt's length or more is one ubatch: no difference to measure
        cands = [u for u in UBATCHES if u <= self.space.n_prompt and u != base.n_ubatch]
        # larger ones help prompt speed (most of all with experts in RAM on a GPU rig); each needs more
        # memory than the last, so the first that fails (or loses) ends them
        for u in sorted(c for c in cands if c > base.n_ubatch):
            n_batch = max(self.incumbent.config.n_batch, u)
            if self.consider(*self._with({"n_ubatch": u, "n_batch": n_batch}, n_ubatch=u, n_batch=n_batch),
                             "ubatch") in (FAILED, WORSE, STOP):
                break
        if self.space.objective.name == "decode" or (self.space.objective.name == "turn"
                                                      and not self.space.objective.workload.prompt_tokens):
            return  # a smaller ubatch only slows prompts; the VRAM it frees is the placement walk's business
        if self.incumbent.config.n_ubatch != base.n_ubatch:
            return  # a larger one won
        for u in sorted((c for c in cands if c < base.n_ubatch), reverse=True):
            if self.consider(*self._with({"n_ubatch": u}, n_ubatch=u), "ubatch") in (WORSE, STOP):
                break

    def _dim_flash_attn(self) -> None:
        base = self.incumbent.config  # type: ignore[union-attr]
        cands = [fa for fa in ("on", "off") if fa != base.flash_attn]
        if base.cache_type_v != "f16" or base.cache_type_k != "f16":
            cands = [fa for fa in cands if fa == "on"]  # a quantized V cache needs flash attention
        self._try("flash_attn", ({"flash_attn": fa} for fa in cands))

    def _dim_cache_type(self) -> None:
        base = self.incumbent.config  # type: ignore[union-attr]
        for kv in ("f16", "q8_0"):
            if kv == base.cache_type_k and kv == base.cache_type_v:
                continue
            fa = base.flash_attn if kv == "f16" else "on"  # a quantized V cache needs flash attention
            ch: dict[str, Any] = {"cache_type": kv, **({"flash_attn": fa} if fa != base.flash_attn else {})}
            cfg, changes = self._with(ch, cache_type_k=kv, cache_type_v=kv, flash_attn=fa)
            if self.consider(cfg, changes, "cache_type") == STOP:
                return

    def _dim_load_mode(self) -> None:
        # mmap (llama.cpp's default) vs a private copy in pinned host buffers where a GPU is used (none: the
        # big prompt win with experts in RAM) vs mmap with the pages locked (--mlock)
        base = self.incumbent.config  # type: ignore[union-attr]
        mapped = "auto" if base.load_mode == "mmap" else base.load_mode  # auto is mmap where the file allows it
        cands = [m for m in ("none", "auto", "mmap+mlock") if m != mapped]
        if not self.space.mlock_possible:
            cands = [m for m in cands if m != "mmap+mlock"]
        self._try("load_mode", ({"load_mode": m} for m in cands))

    def _dim_repack(self) -> None:
        # repacked CPU weights run faster CPU kernels but are not copied to the GPU for big batches; off
        # is tried only where repacking works (the plan turns it off where the probe saw it crash)
        base = self.incumbent.config  # type: ignore[union-attr]
        if base.repack:
            self._try("repack", [{"repack": False}])

    def _dim_draft(self) -> None:
        """Speculative decoding, compared with the winner without a draft, both timed by generating a
        fixed prompt greedily (bench() times random tokens: no draft can help there)."""
        s = self.space
        for dmax in (4, 8, 16):
            inc = self.incumbent
            if inc is None or inc.config.draft is not None and inc.config.draft.draft_max >= dmax:
                continue
            draft = DraftConfig(kind="model", model_path=s.draft_path, draft_max=dmax,
                                n_gpu_layers=-1 if s.gpu_offload else 0)
            base = inc.config.replace(draft=None)
            ch = {k: v for k, v in inc.changes.items() if k not in ("draft", "draft_max")}
            if self.consider(base.replace(draft=draft), {**ch, "draft": "on", "draft_max": dmax}, "draft",
                             generate=True) == STOP:
                return
