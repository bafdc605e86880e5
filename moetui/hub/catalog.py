"""The model catalog (presets/models.toml): MoE models people run, where their GGUFs are published, the
shape preset each maps to, and draft models that share their tokenizer."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from moetui.errors import ConfigError
from moetui.paths import presets_dir


@dataclass
class QuantFile:
    quant: str
    files: list[str]  # as published, split parts in order; [] when not established
    size_bytes: int
    repo: str = ""
    approx: bool = True  # sizes are approximate unless the catalog says otherwise
    size_source: str = ""

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.quant}"


@dataclass
class CatalogModel:
    id: str
    name: str
    shape: str | None  # presets/shapes/<shape>.toml, None when no preset exists
    repos: list[str]
    quants: list[QuantFile] = field(default_factory=list)
    drafts: list[str] = field(default_factory=list)  # REPO:QUANT refs
    role: str = "target"  # "target" | "draft"
    tokenizer: str = ""  # vocabulary family: models with the same one can draft for each other

    def quant(self, quant: str, repo: str | None = None) -> QuantFile | None:
        for q in self.quants:
            if q.quant.upper() == quant.upper() and (repo is None or q.repo == repo):
                return q
        return None


def catalog_path() -> Path:
    return presets_dir() / "models.toml"


def load_catalog(path: Path | None = None) -> list[CatalogModel]:
    path = path or catalog_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: model catalog not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
    models = []
    for i, m in enumerate(data.get("model", [])):
        try:
            repos = list(m["repos"])
            quants = [QuantFile(str(q["quant"]), list(q.get("files", [])), int(q["size_bytes"]),
                                str(q.get("repo") or repos[0]), bool(q.get("approx", True)),
                                str(q.get("size_source", "")))
                      for q in m.get("quant", [])]
            models.append(CatalogModel(str(m["id"]), str(m.get("name", m["id"])), str(m.get("shape") or "") or None,
                                       repos, quants, list(m.get("drafts", [])), str(m.get("role", "target")),
                                       str(m.get("tokenizer", ""))))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"{path}: model #{i + 1} is malformed ({type(exc).__name__}: {exc})") from exc
    return models


def find_model(key: str, catalog: list[CatalogModel] | None = None) -> CatalogModel | None:
    """A catalog entry by id, name or one of its repos (case-insensitive)."""
    k = key.lower()
    for m in catalog or load_catalog():
        if k in (m.id.lower(), m.name.lower()) or k in (r.lower() for r in m.repos):
            return m
    return None


def find_quant(ref: str, catalog: list[CatalogModel] | None = None) -> tuple[CatalogModel, QuantFile] | None:
    """The catalog entry and quant a REPO:QUANT reference names, if the catalog has it."""
    repo, _, quant = ref.partition(":")
    for m in catalog or load_catalog():
        q = m.quant(quant or "Q4_K_M", repo)
        if q is not None:
            return m, q
    return None


def drafts_for(model: CatalogModel, catalog: list[CatalogModel] | None = None) -> list[tuple[CatalogModel, QuantFile]]:
    """The draft models the catalog pairs with MODEL, resolved to their entries. A pairing whose tokenizer
    differs from the target's is a catalog error: llama.cpp would refuse the pair (or draft garbage)."""
    catalog = catalog or load_catalog()
    out = []
    for ref in model.drafts:
        found = find_quant(ref, catalog)
        if found is None:
            raise ConfigError(f"catalog: {model.id} names draft {ref}, which is not in the catalog")
        draft, _ = found
        if draft.tokenizer != model.tokenizer:
            raise ConfigError(f"catalog: {model.id} ({model.tokenizer or '?'} tokenizer) names draft {ref} "
                              f"({draft.tokenizer or '?'} tokenizer)")
        out.append(found)
    return out
