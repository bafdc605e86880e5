"""Hostile answers the fake hub (tests/hub_server.py) can give, one per misbehaviour issue 30 found:

    hub.listing_fault = "stall"       # the listing request is accepted, then nothing is sent (until close)
    hub.listing_fault = "endless"     # a 200 whose JSON body never ends
    hub.listing_fault = "truncated" | "html" | "list" | "wrong_types" | "nested"
    hub.listing_fault = "huge_size" | "negative_size"     # a file of 10^15 bytes; of -5 bytes
    hub.range_fault[path] = "trickle" # ranged GETs of that file send one byte every hub.trickle_s seconds
"""

from __future__ import annotations

import json
from typing import Any

LISTING_FAULTS = ("stall", "endless", "truncated", "html", "list", "wrong_types", "nested", "huge_size", "negative_size")


def serve_listing_fault(handler: Any, fault: str, info: dict[str, Any]) -> None:
    """Answer a model-info request as `fault` says; `info` is the honest answer."""
    if fault == "stall":
        handler.fake._closing.wait(120)
        handler.close_connection = True
        return
    if fault == "endless":
        return _endless(handler)
    if fault in ("huge_size", "negative_size"):
        sib = info["siblings"][0]
        sib["size"] = 10**15 if fault == "huge_size" else -5
        sib.get("lfs", {})["size"] = sib["size"]
        return _send(handler, json.dumps(info).encode())
    body = {
        "truncated": json.dumps(info).encode()[:-40],
        "html": b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
        "list": json.dumps([info]).encode(),
        "wrong_types": json.dumps(dict(info, siblings=[{"rfilename": 7, "size": "big"}])).encode(),
        "nested": b'{"siblings":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    }[fault]
    _send(handler, body)


def _send(handler: Any, body: bytes, content_type: str = "application/json") -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _endless(handler: Any) -> None:
    """A JSON list of siblings that never closes, sent as fast as the client takes it."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    chunk = b"".join(b'{"rfilename":"x-%07d.gguf","size":1},' % i for i in range(2000))
    try:
        handler.wfile.write(b'{"siblings":[')
        while not handler.fake._closing.is_set():
            handler.wfile.write(chunk)
    except OSError:
        pass  # the client hung up: what a bounded reader does


def trickle(handler: Any, data: bytes) -> None:
    """Send `data` one byte every hub.trickle_s seconds (a range answer that never quite stalls)."""
    try:
        for i in range(len(data)):
            handler.wfile.write(data[i:i + 1])
            handler.wfile.flush()
            if handler.fake._closing.wait(handler.fake.trickle_s):
                break
    except OSError:
        pass
    handler.close_connection = True
