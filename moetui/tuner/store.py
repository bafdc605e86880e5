"""Tuned profiles on disk, keyed by rig fingerprint + model identity + llama.cpp version, and the configs
that failed (OOM, crash) on a rig for a model, so they are never proposed again.

Layout under data_dir()/profiles:
    <rig>__<model>__<llama version>.json          one TuneResult per key, replaced atomically
    failed/<rig>__<model>/<config hash>.json       one file per failed config

One file per failure (not one list) so two tunes running at once never lose each other's records: nothing
is read-modified-written, every write is a whole-file atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from moetui.config import RunConfig
from moetui.errors import ConfigError, MoetuiError
from moetui.paths import atomic_write_json, data_dir, expect, load_state
from moetui.sizing.speed import EfficiencyFactors
from moetui.tuner.result import RESULT_VERSION, TuneResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# fields that do not change whether a config loads or how fast it runs
_IGNORED = ("notes", "seed", "model_path")


def config_key(config: RunConfig) -> str:
    """A stable hash of what a config does (not where its model file lives, not its notes)."""
    d = config.to_dict()
    for k in _IGNORED:
        d.pop(k, None)
    if d.get("draft"):
        d["draft"] = {**d["draft"], "model_path": Path(d["draft"]["model_path"]).name if d["draft"].get("model_path") else None}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:20]


def _safe(s: str) -> str:
    return _UNSAFE.sub("-", s or "unknown")[:64]


class ProfileStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir() / "profiles"
        self.warnings: list[str] = []  # corrupt files found (reported, then ignored)

    # --- profiles -------------------------------------------------------------------------------------
    def key(self, rig_fingerprint: str, model_id: str, llama_version: str) -> str:
        return f"{_safe(rig_fingerprint)}__{_safe(model_id)}__{_safe(llama_version)}"

    def path(self, rig_fingerprint: str, model_id: str, llama_version: str) -> Path:
        return self.root / f"{self.key(rig_fingerprint, model_id, llama_version)}.json"

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)

    def _read(self, path: Path) -> TuneResult | None:
        """A saved profile; None when missing, of a newer format (left as it is, with a warning) or corrupt
        (moved aside by paths.load_state, with a warning)."""

        def check(data: Any) -> TuneResult | None:
            expect(isinstance(data, dict), "not a JSON object")
            version = data.get("version", RESULT_VERSION)
            if not isinstance(version, int) or isinstance(version, bool) or version > RESULT_VERSION:
                self._warn(f"{path}: tuning profile of format {str(version)[:20]}, newer than this moetui reads "
                           f"({RESULT_VERSION}); ignored, left as it is")
                return None
            return TuneResult.from_dict(data)

        # NaN allowed: a profile's measured figures are checked on their own (_efficiency), the tuned config kept
        result = load_state(path, "tuning profile", check, on_notice=self._warn, finite_only=False)
        if result is None:
            return None
        if result.efficiency is not None and _efficiency(result.efficiency) is None:
            self._warn(f"{path}: the measured efficiency factors in this profile are corrupt; plans use the defaults")
            result.efficiency = None
        return result

    def get(self, rig_fingerprint: str, model_id: str, llama_version: str) -> TuneResult | None:
        return self._read(self.path(rig_fingerprint, model_id, llama_version))

    def put(self, result: TuneResult) -> Path:
        """Save a profile; where it cannot be (a full disk, a folder in its place, no permission) the tune's
        result still stands: the reason goes to `warnings` and None is returned."""
        path = self.path(result.rig_fingerprint, result.model_id, result.llama_version)
        try:
            atomic_write_json(path, result.to_dict())
        except OSError as exc:
            self._warn(f"{path}: the tuning profile could not be saved ({exc.strerror or exc}); "
                       "the previous one, if any, is unchanged")
            return None
        return path

    def list(self) -> list[TuneResult]:
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.glob("*.json")):
            r = self._read(p)
            if r is not None:
                out.append(r)
        return out

    def rig_efficiency(self, rig_fingerprint: str) -> EfficiencyFactors | None:
        """The efficiency factors the latest tune on this rig measured (for whichever model): plans on this
        rig start from them instead of the defaults."""
        tuned = [r for r in self.list() if r.rig_fingerprint == rig_fingerprint and r.efficiency]
        latest = max(tuned, key=lambda r: r.created, default=None)
        return _efficiency(latest.efficiency) if latest and latest.efficiency else None

    # --- failed configs -------------------------------------------------------------------------------
    def _failed_dir(self, rig_fingerprint: str, model_id: str) -> Path:
        return self.root / "failed" / f"{_safe(rig_fingerprint)}__{_safe(model_id)}"

    def record_failure(self, rig_fingerprint: str, model_id: str, config: RunConfig, kind: str, message: str) -> None:
        path = self._failed_dir(rig_fingerprint, model_id) / f"{config_key(config)}.json"
        try:
            atomic_write_json(path, {"kind": kind, "message": message, "time": time.time(), "config": config.to_dict()})
        except OSError as exc:  # the tune goes on; it only forgets to skip this config next time
            self._warn(f"{path}: a failed config could not be recorded ({exc.strerror or exc})")

    def is_failed(self, rig_fingerprint: str, model_id: str, config: RunConfig) -> bool:
        return (self._failed_dir(rig_fingerprint, model_id) / f"{config_key(config)}.json").is_file()

    def failures(self, rig_fingerprint: str, model_id: str) -> list[dict[str, Any]]:
        d = self._failed_dir(rig_fingerprint, model_id)
        out = []
        for p in sorted(d.glob("*.json")) if d.is_dir() else []:
            record = load_state(p, "failed-config record", _check_failure, on_notice=self._warn)
            if record is not None:
                out.append(record)
        return out


def _check_failure(data: Any) -> dict[str, Any]:
    expect(isinstance(data, dict) and isinstance(data.get("kind", ""), str) and isinstance(data.get("message", ""), str),
           "not a failure record (kind, message)")
    return data


def _efficiency(d: Any) -> EfficiencyFactors | None:
    """EfficiencyFactors from a profile's field, or None where it is not an object of finite, non-negative
    numbers (a hand-edited or corrupt profile must not break every plan on the rig)."""
    if not isinstance(d, dict):
        return None
    fields = EfficiencyFactors.__dataclass_fields__
    for k, v in d.items():
        if k not in fields or k == "source":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            return None
    if not isinstance(d.get("source", ""), str):
        return None
    return EfficiencyFactors.from_dict(d)
