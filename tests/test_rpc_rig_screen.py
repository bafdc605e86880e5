"""The Rig screen lists the remote devices `detect --rpc` found (a real ggml-rpc-server on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_pilot import settle

from moetui.hardware import load_preset
from moetui.runtime.rpc_ctypes import probe
from moetui.export.rpc_server import rpc_server_binary
from moetui.ui.app import MoetuiApp

from rpc_helpers import rpc_servers

pytestmark = pytest.mark.anyio


async def test_rig_screen_shows_remote_devices(tiny_moe: Path, tmp_path: Path) -> None:
    rpc_server_binary()
    with rpc_servers(tmp_path, n=1) as procs:
        addr = procs[0][0]
        rig = load_preset("rtx4090-ddr5-64")
        rig.remotes = probe(f"{addr}=40MiB")
    app = MoetuiApp(model_path=str(tiny_moe), rig=rig)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        text = app.screen_text()
        assert f"remote RPC0[{addr}]: CPU" in text and "capped at 40 MiB" in text


async def test_plan_screen_shows_a_split_across_hosts() -> None:
    from moetui.hardware.rpc import RemoteDevice
    from moetui.sizing.memory import GIB

    rig = load_preset("rtx4090-ddr5-64")
    rig.gpus, rig.build.gpu_offload = [], False
    ep = "192.168.1.20:50052"
    rig.remotes = [RemoteDevice(endpoint=ep, buffer_type=f"RPC0[{ep}]", backend="CPU", memory_free_bytes=128 * GIB,
                                memory_total_bytes=128 * GIB, rtt_s=3e-4)]
    app = MoetuiApp(model_path="qwen3-235b-a22b:Q4_K_M", rig=rig)  # 133 GB: not in 64 GB of RAM alone
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.state.plan is not None and app.state.plan.mode == "rpc_split"
        await pilot.press("p")
        await pilot.pause()
        text = app.screen_text()
        assert "rpc split" in text and ep in text
