"""Planning across hosts: this machine plus llama.cpp RPC servers (`ggml-rpc-server`) on the network.

How llama.cpp lays a model out with `--rpc` on a host without a GPU (llama_model::load_tensors): the
RPC devices are "GPUs", listed first; `-ngl K` offloads the last K of the n_layer + 1 layer slots (the
output head is slot n_layer), split over the devices in order by the cumulative `-ts` fractions. So the
first layers stay in local RAM, then RPC0's share, RPC1's, ..., and the output head on the last device.
With whole-layer counts as `-ts` values (summing to K) the split is exact.

This module keeps that shape: the local host holds as many leading layers as its RAM budget allows, the
servers, in the order given, the rest (a server is used only when the model needs it: every server in
the chain costs network hops on every token). Cost model per decoded token:
  * each device reads its active bytes at its memory bandwidth (devices work in turn, not in parallel);
  * every device boundary is a hop: ROUND_TRIPS_PER_HOP network round trips (ggml-rpc sends the
    input, runs the graph, reads the result) plus the hidden state (n_embd f32) over the link; the
    last hop brings the logits back (n_vocab f32), which is what a slow link feels most.
Loading: every byte placed on a server crosses the link once; with the server's tensor cache
(`ggml-rpc-server -c`) tensors over 10 MiB are sent as a hash and read from the server's disk instead.
tuning/rpc_bench.py measures all of this on 127.0.0.1; the defaults for a LAN are stated, not measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from moetui.config import RunConfig
from moetui.errors import DoesNotFit
from moetui.hardware.rig import Rig
from moetui.hardware.rpc import RemoteDevice
from moetui.model.info import ModelInfo
from moetui.sizing import explain
from moetui.sizing.context import DEFAULT_TARGET_CTX
from moetui.sizing.plan_types import LayerSummary as Summary, Plan, PlanOptions, math_threads, ram_budget
from moetui.sizing.memory import CPU_RUNTIME_OVERHEAD, MIB, MemoryBreakdown, compute_buffer_bytes, kv_layer_bytes
from moetui.config.units import gib
from moetui.sizing.speed import EfficiencyFactors, SpeedPrediction

GBE_LINK_GBS = 0.117  # 1 Gb Ethernet, payload rate
LAN_RTT_S = 250e-6  # a switched LAN round trip
ROUND_TRIPS_PER_HOP = 2
CACHE_HASH_THRESHOLD = 10 * MIB  # ggml-rpc.cpp HASH_THRESHOLD: bigger weight tensors go by hash
CACHE_READ_GBS = 1.0  # the server reading its tensor cache from disk (an assumption: a SATA/NVMe SSD)
HASH_GBS = 1.5  # the client hashing those tensors (FNV-1a, one core)
# of a server's usable memory, kept free: buffer alignment and fragmentation (the server process's own
# needs are outside the cap: moetui rpc-server adds them to the limit it sets)
SERVER_MARGIN_FRACTION = 0.05


@dataclass
class NetworkModel:
    link_gbs: float = GBE_LINK_GBS
    rtt_s: float = LAN_RTT_S
    measured: bool = False  # rtt from detect's round trip

    @classmethod
    def for_devices(cls, remotes: list[RemoteDevice]) -> "NetworkModel":
        rtts = [r.rtt_s for r in remotes if r.rtt_s]
        links = [r.link_gbs for r in remotes if r.link_gbs]
        return cls(min(links) if links else GBE_LINK_GBS, max(rtts) if rtts else LAN_RTT_S, bool(rtts))

    def hop_seconds(self, payload_bytes: float) -> float:
        return ROUND_TRIPS_PER_HOP * self.rtt_s + payload_bytes / (self.link_gbs * 1e9)


@dataclass
class DeviceShare:
    device: str  # "CPU" (this host) or an RPC buffer type, RPC0[host:port]
    endpoint: str | None  # None for this host
    layers: list[int] = field(default_factory=list)
    has_output: bool = False
    memory: MemoryBreakdown | None = None
    budget: int = 0


@dataclass
class LoadEstimate:
    remote_bytes: int
    first_s: float  # every remote byte over the link
    cached_s: float  # with the servers' tensor cache warm
    cacheable_bytes: int


def _layer_weights(model: ModelInfo) -> list[int]:
    out = [0] * model.n_layers
    for t in model.tensors:
        if t.layer is not None and t.layer < model.n_layers:
            out[t.layer] += t.nbytes
    return out


def _head_bytes(model: ModelInfo) -> tuple[int, int]:
    """(input embedding, output head + final norm) bytes."""
    embd = sum(t.nbytes for t in model.tensors if t.layer is None and t.name.startswith("token_embd."))
    head = sum(t.nbytes for t in model.tensors if t.layer is None and not t.name.startswith("token_embd."))
    return embd, head


def split_layers(model: ModelInfo, local_budget: int, remotes: list[RemoteDevice], n_ctx: int, kv_type: str,
                 n_ubatch: int, flash_attn: bool) -> list[DeviceShare]:
    """Leading layers on this host while they fit, the rest on the servers in order. Raises DoesNotFit
    with how much is missing."""
    weights = _layer_weights(model)
    kv = [kv_layer_bytes(model, il, n_ctx, kv_type, kv_type) for il in range(model.n_layers)]
    embd, head = _head_bytes(model)
    compute = compute_buffer_bytes(model, n_ctx, n_ubatch, flash_attn, with_output=False)
    compute_out = compute_buffer_bytes(model, n_ctx, n_ubatch, flash_attn, with_output=True)
    local = DeviceShare("CPU", None, budget=local_budget,
                        memory=MemoryBreakdown("CPU", weights=embd, compute=compute_out, overhead=CPU_RUNTIME_OVERHEAD))
    shares = [local]
    il = 0

    def tail(share: DeviceShare, layer: int) -> int:
        """A server that takes the last layer takes the output head too (llama.cpp's layout)."""
        return head + compute_out - compute if share.endpoint and layer == model.n_layers - 1 else 0

    def take(share: DeviceShare) -> None:
        nonlocal il
        m = share.memory
        assert m is not None
        while il < model.n_layers and m.total + weights[il] + kv[il] + tail(share, il) <= share.budget:
            m.weights += weights[il]
            m.kv += kv[il]
            share.layers.append(il)
            il += 1

    take(local)
    if il == model.n_layers and local.memory.total + head <= local_budget:  # type: ignore[union-attr]
        local.memory.weights += head  # type: ignore[union-attr]
        local.has_output = True
        return shares
    for r in remotes:
        if il >= model.n_layers:
            break
        share = DeviceShare(r.buffer_type or f"RPC[{r.endpoint}]", r.endpoint, budget=int(r.usable_bytes * (1 - SERVER_MARGIN_FRACTION)),
                            memory=MemoryBreakdown(r.buffer_type or r.endpoint, compute=compute))
        take(share)
        if share.layers:
            shares.append(share)
    last = shares[-1]
    if il < model.n_layers or last.memory.total + head + (compute_out - compute) > last.budget:  # type: ignore[union-attr]
        left = sum(weights[il:]) + sum(kv[il:]) + head
        have = sum(s.budget for s in shares[1:]) if len(shares) > 1 else 0
        what = f"layers {il}-{model.n_layers - 1} and the output head" if il < model.n_layers else "the output head"
        raise DoesNotFit(f"{model.name or model.path} does not fit this host plus {len(remotes)} RPC server(s): "
                         f"{explain.gb(left)} of {what} have no room "
                         f"(servers used: {explain.gb(have)}); add a host with at least {explain.gb(left / (1 - SERVER_MARGIN_FRACTION))} free")
    m = last.memory
    assert m is not None
    m.weights += head
    m.compute = compute_out if last.endpoint else m.compute
    last.has_output = True
    return shares


def load_estimate(model: ModelInfo, shares: list[DeviceShare], net: NetworkModel) -> LoadEstimate:
    remote_layers = {il for s in shares if s.endpoint for il in s.layers}
    out_remote = any(s.has_output and s.endpoint for s in shares)
    tensors = [t for t in model.tensors if (t.layer in remote_layers)
               or (out_remote and t.layer is None and not t.name.startswith("token_embd."))]
    total = sum(t.nbytes for t in tensors)
    big = sum(t.nbytes for t in tensors if t.nbytes > CACHE_HASH_THRESHOLD)
    first = total / (net.link_gbs * 1e9)
    cached = (total - big) / (net.link_gbs * 1e9) + big / (CACHE_READ_GBS * 1e9) + big / (HASH_GBS * 1e9)
    return LoadEstimate(total, first, cached, big)


def predict_split(model: ModelInfo, shares: list[DeviceShare], local_bw_gbs: float, cpu_cores: int,
                  net: NetworkModel, n_ubatch: int, eff: EfficiencyFactors,
                  remotes: list[RemoteDevice] | None = None) -> SpeedPrediction:
    """Decode and prompt tok/s of a layer split over this host and RPC servers."""
    frac = model.n_expert_used / model.n_expert if model.n_expert else 1.0
    by_dev = {r.buffer_type: r for r in remotes or []}
    per_layer_active = [0.0] * model.n_layers
    for t in model.tensors:
        if t.layer is not None and t.layer < model.n_layers:
            per_layer_active[t.layer] += t.nbytes * (frac if t.expert_part else 1.0)
    _, head = _head_bytes(model)
    secs: dict[str, float] = {}
    for s in shares:
        r = by_dev.get(s.device)
        bw = (r.mem_bandwidth_gbs if r and r.mem_bandwidth_gbs else local_bw_gbs) * eff.cpu_bw
        active = sum(per_layer_active[il] for il in s.layers) + (head if s.has_output else 0)
        secs[s.device] = active / (bw * 1e9) if bw > 0 else 0.0
    remote_shares = [s for s in shares if s.endpoint]
    hops = len(remote_shares) + (1 if remote_shares else 0)  # into each server, and back to this host
    hidden = model.n_embd * 4.0
    net_s = 0.0
    if remote_shares:
        net_s = (hops - 1) * net.hop_seconds(hidden) + net.hop_seconds(model.n_vocab * 4.0)
    fixed = eff.token_overhead_s + model.n_layers * eff.layer_overhead_s
    t_token = sum(secs.values()) + net_s + fixed
    decode = 1.0 / t_token if t_token > 0 else 0.0
    flops_per_token = 2.0 * model.active_bytes_per_token / max(model.total_bytes / max(model.n_params, 1), 1e-9)
    t_compute = n_ubatch * flops_per_token / (max(cpu_cores, 1) * eff.cpu_gflops_per_core * 1e9)
    t_net_prompt = ((hops - 1) * net.hop_seconds(n_ubatch * hidden) + net.hop_seconds(model.n_vocab * 4.0)) if remote_shares else 0.0
    prompt = n_ubatch / (t_compute + t_net_prompt + fixed)
    notes = []
    if remote_shares:
        notes.append(f"network per token: {hops} hops, {net_s * 1e3:.2f} ms of {t_token * 1e3:.2f} ms "
                     f"(RTT {net.rtt_s * 1e6:.0f} us{' measured' if net.measured else ' assumed'}, link "
                     f"{net.link_gbs:g} GB/s); the logits ({model.n_vocab * 4 / 1e6:.2f} MB) come back each token")
    return SpeedPrediction(decode, prompt, secs, hops, "cpu compute" + (" + network" if remote_shares else ""), notes)


def run_config(base: RunConfig, shares: list[DeviceShare], n_layers: int) -> RunConfig:
    """-ngl and -ts for the split, with only the servers it uses (each one listed costs hops)."""
    remote = [s for s in shares if s.endpoint]
    if not remote:
        return base.replace(rpc_servers=[], n_gpu_layers=0, tensor_split=None)
    servers: list[str] = []
    for s in remote:
        if s.endpoint not in servers:
            servers.append(s.endpoint)  # type: ignore[arg-type]
    ngl = sum(len(s.layers) for s in remote) + 1  # + the output head's slot
    split = [float(len(s.layers) + (1 if s.has_output else 0)) for s in remote]
    return base.replace(rpc_servers=servers, n_gpu_layers=ngl, tensor_split=split, overrides=[], split_mode="layer")



def remote_line(r: RemoteDevice) -> str:
    cap = f", capped at {gib(r.limit_bytes)}" if r.limit_bytes else ""
    rtt = f", round trip {r.rtt_s * 1e3:.2f} ms" if r.rtt_s else ""
    return (f"{r.buffer_type or r.endpoint}: {r.backend}, {gib(r.memory_free_bytes)} free / "
            f"{gib(r.memory_total_bytes)}{cap}{rtt} (RPC {r.protocol or '?'})")


def plan_across_hosts(model: ModelInfo, rig: Rig, options: PlanOptions | None,
                      plan: Callable[[ModelInfo, Rig, PlanOptions], Plan]) -> Plan:
    """plan() for a rig with remote devices: the local plan (`plan`, moetui.sizing.plan.plan, passed in: it
    dispatches here) when the model fits this host (servers unused), else a layer split over this host and
    the servers."""
    o: PlanOptions = options or PlanOptions()
    local_rig = dataclasses.replace(rig, remotes=[])
    try:
        p = plan(model, local_rig, o)
        p.explanation.append(f"fits this host alone: the {len(rig.remotes)} RPC server(s) are not used "
                             "(each would add network hops to every token)")
        return p
    except DoesNotFit as alone:
        local_short = str(alone)
    n_ctx = o.n_ctx or min(model.context_length or 4096, DEFAULT_TARGET_CTX)
    kv = o.cache_type or "f16"
    fa = o.flash_attn != "off"
    budget = ram_budget(rig, o)
    shares = split_layers(model, budget, rig.remotes, n_ctx, kv, o.n_ubatch, fa)
    net = NetworkModel.for_devices(rig.remotes)
    local_bw = rig.ram_bandwidth_gbs or rig.memory.theoretical_bandwidth_gbs or 20.0
    sp = predict_split(model, shares, local_bw, rig.cpu.physical_cores, net, o.n_ubatch, o.efficiency, rig.remotes)
    load = load_estimate(model, shares, net)
    base = RunConfig(model_path=o.model_path or model.path, n_ctx=n_ctx, n_gpu_layers=0, flash_attn="on" if fa else "off",
                     cache_type_k=kv, cache_type_v=kv, n_batch=o.n_batch, n_ubatch=o.n_ubatch,
                     n_threads=math_threads(rig), n_threads_batch=math_threads(rig),
                     repack=rig.build.repack_safe is not False)
    cfg = run_config(base, shares, model.n_layers)
    used = [s for s in shares if s.endpoint]
    why = [f"does not fit this host alone ({local_short.split(': ', 1)[-1]})",
           "adding " + " and ".join(f"{s.endpoint} ({len(s.layers)} layers{', output head' if s.has_output else ''})" for s in used)
           + f" makes it fit: layers {shares[0].layers[0] if shares[0].layers else '-'}-"
             f"{shares[0].layers[-1] if shares[0].layers else '-'} here (-ngl {cfg.n_gpu_layers} -ts "
           + ",".join(f"{x:g}" for x in cfg.tensor_split or []) + ")"]
    if rig.gpus:
        why.append(f"this host's GPU(s) ({', '.join(g.name for g in rig.gpus)}) hold nothing in a split across hosts: "
                   "moetui plans layers over RAM and the servers only (a limit of this planner, not of llama.cpp)")
    for s in shares:
        m = s.memory
        assert m is not None
        why.append(explain.budget_line(s.device, m.total, s.budget, f"weights {explain.gb(m.weights)}, KV {explain.gb(m.kv)}, "
                                                                  f"compute {explain.gb(m.compute)}"))
    why.append(f"first load sends {explain.gb(load.remote_bytes)} over the network: ~{load.first_s:.0f} s at "
               f"{net.link_gbs:g} GB/s; with the servers' tensor cache (-c) warm ~{load.cached_s:.0f} s "
               f"({explain.gb(load.cacheable_bytes)} in tensors over 10 MiB go by hash)")
    why.append(explain.speed_line(sp.decode_tps, sp.prompt_tps, sp.prompt_bound,
                                  max(sp.decode_seconds_by_device, key=sp.decode_seconds_by_device.get),
                                  o.efficiency.source))
    why += sp.notes
    cfg.notes = list(why)
    memory = {s.device: s.memory for s in shares if s.memory is not None}
    budgets = {s.device: s.budget for s in shares}
    dev_of = {il: s.device for s in shares for il in s.layers}
    out_dev = next(s.device for s in shares if s.has_output)
    placement = [(t.name, "CPU" if t.name.startswith("token_embd.") else (dev_of[t.layer] if t.layer is not None else out_dev))
                 for t in model.tensors]
    layers = [Summary(il, dev_of[il], model.layers[il].is_moe, sorted(model.layers[il].expert_bytes)
                      if dev_of[il] != "CPU" else [], sorted(model.layers[il].expert_bytes) if dev_of[il] == "CPU" else [])
              for il in range(model.n_layers)]
    return Plan(cfg, "rpc_split", memory, budgets, placement, layers, sp.decode_tps, sp.prompt_tps, None, None, why,
                sp, o.efficiency)
