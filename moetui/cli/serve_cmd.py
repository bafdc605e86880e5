"""`moetui serve MODEL`: the config in force (tuned, chosen or planned; the same resolver as `run` and
`export`) served as an OpenAI-compatible API by llama.cpp's own llama-server, supervised
(moetui.export.serving): base URL, model name and client snippets printed once it answers /health, live
figures from /metrics and /slots (a status line, or JSON lines with --json), Ctrl+C stops it."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from moetui.cli.run_cmd import add_config_arguments, config_from_args
from moetui.config import RunConfig
from moetui.export.server_stats import StatsPoller
from moetui.export.serving import (Endpoint, ServeOptions, ServerEvent, ServerSupervisor, api_key_path, client_snippets,
                                   is_loopback, stored_api_key)
from moetui.model.chat_template import chat_template_for_file

POLL_S = 1.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                   "only); any other needs an API key, generated and stored if --api-key is not given")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("-np", "--parallel", type=int, dest="n_parallel", metavar="N",
                   help="serve N requests at once (N slots; the context per request stays, so the KV cache is N "
                   "times larger and the plan places for it; default: the config's, 1)")
    p.add_argument("--api-key", help="clients must send this key (Authorization: Bearer KEY)")
    p.add_argument("--binary", metavar="PATH", help="the llama-server to run (default: one on PATH, else moetui's "
                   "build of the llama.cpp that llama-cpp-python vendors)")
    p.add_argument("--max-restarts", type=int, default=3, help="restarts after crashes in a row before giving up")
    p.add_argument("--untuned", action="store_true", help="ignore the profile `moetui tune` saved: serve the plan")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: the endpoint, events and live stats")


def serving_config(args: argparse.Namespace) -> RunConfig:
    """The config in force for N slots (the settings carry --parallel: the plan places N sequences' KV and a
    profile tuned for another N is not reused): the context per request kept, the total N times larger."""
    cfg = config_from_args(args, planned=True, prefer_tuned=not args.untuned)
    n = args.n_parallel or cfg.n_parallel
    if n != cfg.n_parallel:  # a --config file's own slot count, changed on the command line
        cfg = cfg.replace(n_parallel=n, n_ctx=(args.ctx or cfg.n_ctx // max(cfg.n_parallel, 1)) * n)
    return cfg


def _say(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(obj), flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def _announce(args: argparse.Namespace, ep: Endpoint, cfg: RunConfig) -> None:
    snippets = client_snippets(ep)
    template = chat_template_for_file(cfg.model_path)
    if args.json:
        print(json.dumps({"event": "ready", "base_url": ep.openai_url, "model": ep.model, "host": ep.host,
                          "port": ep.port, "pid": ep.pid, "binary": ep.binary, "version": ep.version,
                          "api_key_required": ep.api_key is not None, "n_parallel": cfg.n_parallel,
                          "n_ctx": cfg.n_ctx, "chat_template": template.to_dict() if template else None,
                          **snippets}), flush=True)
        return
    lines = [f"moetui: serving {Path(cfg.model_path).name} with {ep.binary} ({ep.version})",
             f"  base URL  {ep.openai_url}", f"  model     {ep.model}",
             f"  slots     {cfg.n_parallel} (context {cfg.n_ctx // cfg.n_parallel} tokens each)"]
    if template is not None:
        lines.append(f"  chat      {template.label}")
    if ep.api_key:
        lines.append("  API key   required (Authorization: Bearer KEY), see the snippets")
    lines += ["", "curl:", "  " + snippets["curl"], "", "Python (pip install openai):",
              *("  " + ln for ln in snippets["python"].splitlines()), "", "Ctrl+C stops the server."]
    print("\n".join(lines), flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    cfg = serving_config(args)
    key = args.api_key
    if not is_loopback(args.host) and not key:
        key, made = stored_api_key(create=True)
        print(f"moetui: {args.host} is reachable from other machines, so clients need an API key; "
              f"{'generated one and stored it' if made else 'using the one stored'} in {api_key_path()}",
              file=sys.stderr)
    def on_event(ev: ServerEvent) -> None:
        if not args.json and sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K")  # over the live stats line
        _say(args, {"event": "server", "kind": ev.kind, "message": ev.message, "attempt": ev.attempt, "at": ev.at},
             f"moetui: {ev.message}")

    supervisor = ServerSupervisor(cfg, ServeOptions(host=args.host, port=args.port, api_key=key, binary=args.binary,
                                                    max_restarts=args.max_restarts), on_event=on_event)
    # SIGTERM (a service manager, `kill`) stops the server as Ctrl+C does
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        ep = supervisor.start()
        poller = StatsPoller(ep.base_url, ep.api_key, ep.pid)
        poller.poll()  # the counters' baseline, before any client can know the URL
        _announce(args, ep, cfg)
        tty = sys.stderr.isatty() and not args.json
        while supervisor.gave_up is None:
            time.sleep(POLL_S)
            if supervisor.gave_up is not None:
                break
            if not supervisor.running:
                continue  # restarting: the events say so
            poller.pid = supervisor.proc.pid if supervisor.proc else None
            st = poller.poll()
            if args.json:
                print(json.dumps({"event": "stats", **st.to_dict()}), flush=True)
            elif tty:
                sys.stderr.write("\r\x1b[2K" + st.line()[:200])
                sys.stderr.flush()
        print(f"moetui: error: {supervisor.gave_up}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not args.json:
            print(file=sys.stderr)
        return 0
    finally:
        supervisor.stop()
        signal.signal(signal.SIGTERM, previous)

