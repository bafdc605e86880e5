"""The placement axis: experts-in-RAM positions <-> llama.cpp overrides, and the walk the tuner makes along
it from the plan's position (in both directions, then the boundary layer part by part)."""

from __future__ import annotations

from moetui.config import RunConfig
from moetui.model.inspect import inspect_file
from moetui.sizing.overrides import cpu_expert_overrides, n_cpu_moe_overrides
from moetui.tuner.placement_axis import (
    BETTER,
    FAILED,
    SAME,
    STOP,
    WORSE,
    PlacementAxis,
    walk,
)


def test_axis_round_trips_positions(tiny_moe):
    info = inspect_file(tiny_moe)
    base = RunConfig(model_path=str(tiny_moe))
    axis = PlacementAxis.for_model(info, base.replace(overrides=n_cpu_moe_overrides(1)))  # first layers in RAM
    assert axis is not None and not axis.from_end and axis.per_layer == 3 and axis.max == 3 * len(axis.moe_layers)
    for pos in range(axis.max + 1):
        assert axis.position(axis.config_at(base, pos)) == pos
    # whole layers are exactly --n-cpu-moe N
    assert axis.position(base.replace(overrides=n_cpu_moe_overrides(2))) == 6
    assert axis.describe(6) == {"n_cpu_moe": 2}
    # the boundary layer keeps its last-to-move part ("down") in RAM first
    assert axis.cpu_map(7) == {0: {"up", "gate", "down"}, 1: {"up", "gate", "down"}, 2: {"down"}}
    assert axis.describe(8)["boundary"] == "blk.2 gate+down in RAM"
    assert axis.position(base.replace(overrides=cpu_expert_overrides({0: {"up", "gate", "down"}, 1: {"down"}}))) == 4


def test_axis_from_the_last_layer(tiny_moe):
    """The plan keeps the last layers' experts in RAM (llama.cpp's fit's way): the axis counts from there."""
    info = inspect_file(tiny_moe)
    base = RunConfig(model_path=str(tiny_moe))
    n = info.n_layers
    last = base.replace(overrides=cpu_expert_overrides({n - 1: {"up", "gate", "down"}}))
    for config in (base, last):  # no experts in RAM yet: the plan's default end
        axis = PlacementAxis.for_model(info, config)
        assert axis is not None and axis.from_end and axis.moe_layers[0] == n - 1
    assert axis.position(last) == 3 and axis.describe(3) == {"experts_in_ram_last": 1}
    for pos in range(axis.max + 1):
        assert axis.position(axis.config_at(base, pos)) == pos
    # the boundary is the next layer down; its last-to-move part ("down") goes to RAM first
    assert axis.cpu_map(4) == {n - 1: {"up", "gate", "down"}, n - 2: {"down"}}
    assert axis.describe(5) == {"experts_in_ram_last": 1, "boundary": f"blk.{n - 2} gate+down in RAM"}


def _world(fails_below: int, score):
    """A rig where positions below `fails_below` run out of VRAM and `score(pos)` is the speed."""
    best: dict[str, int | None] = {"pos": None}

    def try_pos(pos: int) -> str:
        if pos < fails_below:
            return FAILED
        b = best["pos"]
        if b is None or score(pos) > score(b) * 1.01:
            best["pos"] = pos
            return BETTER
        return SAME if score(pos) >= score(b) * 0.99 else WORSE

    return try_pos, best


def test_walk_goes_down_until_oom_then_splits_the_boundary():
    try_pos, best = _world(fails_below=6, score=lambda p: 100 - p)
    best["pos"] = 7  # the plan's position ran
    tried = walk(7, True, 3, 12, try_pos, lambda: best["pos"])
    assert tried == [6, 3, 5]  # down a whole layer (better), another (OOM), then one part of layer 1 (OOM)
    assert best["pos"] == 6


def test_walk_goes_up_when_the_plan_fails():
    try_pos, best = _world(fails_below=8, score=lambda p: 100 - p)
    tried = walk(4, False, 3, 12, try_pos, lambda: best["pos"])
    assert tried == [6, 9, 8, 7]  # whole layers up until one loads, then parts back down until OOM
    assert best["pos"] == 8


def test_walk_tries_more_in_ram_when_fewer_is_worse():
    # a rig where RAM experts help (e.g. the freed VRAM goes to something faster): the walk turns around
    try_pos, best = _world(fails_below=0, score=lambda p: p)
    best["pos"] = 6
    tried = walk(6, True, 3, 12, try_pos, lambda: best["pos"])
    assert tried[:3] == [3, 9, 12]
    assert best["pos"] == 12


def test_walk_from_all_experts_on_the_gpu_does_not_go_up():
    try_pos, best = _world(fails_below=0, score=lambda p: p)
    best["pos"] = 0
    assert walk(0, True, 3, 12, try_pos, lambda: best["pos"]) == []


def test_walk_stops_at_once_when_the_budget_is_spent():
    calls = []

    def try_pos(pos: int) -> str:
        calls.append(pos)
        return STOP

    assert walk(7, True, 3, 12, try_pos, lambda: 7) == [6]
    assert calls == [6]
