"""A hub repo's GGUF files as quants: sizes, sha256, split parts grouped into one entry.

A reference names a model on the hub the way llama.cpp's `-hf` does: `owner/repo:QUANT` (the quant label,
any case), or `owner/repo/path/to/file.gguf` (one file; a split model's parts are found from any part),
optionally `owner/repo@revision:QUANT`. `owner/repo` alone picks the only quant, else Q4_K_M.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from moetui.errors import HubError
from moetui.hub.connection import endpoint, hub_errors, require_online

SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Quant labels as GGUF publishers write them in file names (unsloth's "UD-" dynamic quants included).
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K(?:_(?:XXL|XL|L|M|S))?|Q[4-8]_[01]"
    r"|Q2_K_S|TQ[12]_0|MXFP4(?:_MOE)?|BF16|F16|F32|FP16))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SKIP_RE = re.compile(r"mmproj|imatrix", re.IGNORECASE)
DEFAULT_QUANT = "Q4_K_M"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class HubRef:
    repo: str
    quant: str | None = None
    file: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        if self.file:
            return f"{self.repo}{rev}/{self.file}"
        return f"{self.repo}{rev}" + (f":{self.quant}" if self.quant else "")


@dataclass
class RemoteFile:
    path: str  # inside the repo, as published
    size: int
    sha256: str | None = None  # LFS sha256: what the hub promises the bytes hash to
    blob_id: str | None = None


@dataclass
class QuantGroup:
    quant: str  # label, e.g. "Q4_K_M" or "UD-Q4_K_XL"
    files: list[RemoteFile]  # split parts in order; one entry for a single-file model

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def first(self) -> RemoteFile:
        return self.files[0]

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1


@dataclass
class RepoListing:
    repo: str
    revision: str
    commit: str | None
    quants: list[QuantGroup] = field(default_factory=list)


def looks_like_hub_ref(ref: str) -> bool:
    ref = _strip_prefixes(ref)
    repo = re.split(r"[:@]", ref, maxsplit=1)[0]
    parts = repo.split("/")
    if ref.startswith(("/", ".", "~")) or len(parts) < 2 or not all(parts[:2]):
        return False
    # "dir/model.gguf" is a local path; a hub file needs owner/repo/file.gguf
    return not (parts[-1].lower().endswith(".gguf") and len(parts) < 3)


def _strip_prefixes(ref: str) -> str:
    for prefix in ("hf://", "https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def parse_ref(ref: str) -> HubRef:
    raw = _strip_prefixes(ref.strip())
    if not looks_like_hub_ref(raw):
        raise HubError(f"{ref!r} is not a hub reference (expected owner/repo:QUANT or owner/repo/file.gguf)")
    parts = raw.split("/")
    head, rest = "/".join(parts[:2]), "/".join(parts[2:])
    quant = revision = None
    if not rest and ":" in head:
        head, quant = head.split(":", 1)
    if "@" in head:
        head, revision = head.split("@", 1)
    if rest.startswith(("resolve/", "blob/")):  # a pasted web URL: owner/repo/resolve/REV/file.gguf
        _, revision, rest = rest.split("/", 2)
    if rest and not rest.lower().endswith(".gguf"):
        raise HubError(f"{ref!r}: a file reference must end in .gguf")
    owner, name = head.split("/")
    if not re.fullmatch(r"[\w.-]+", owner) or not re.fullmatch(r"[\w.-]+", name):
        raise HubError(f"{ref!r}: {head!r} is not a valid repo id")
    return HubRef(head, quant or None, rest or None, revision or None)


def quant_label(filename: str) -> str:
    """The quant a published GGUF file name carries ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf" -> "UD-Q4_K_XL")."""
    name = PurePosixPath(filename).name
    m = SPLIT_RE.match(name)
    stem = m.group("stem") if m else name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    found = _QUANT_RE.findall(stem)
    if found:
        label = found[-1].upper()
        return "F16" if label == "FP16" else label
    return re.split(r"[-.]", stem)[-1] or stem


def group_quants(files: list[RemoteFile]) -> list[QuantGroup]:
    """Split parts (-00001-of-00003.gguf) become one entry; order follows the published listing."""
    groups: dict[str, list[RemoteFile]] = {}
    for f in files:
        name = PurePosixPath(f.path).name
        if not name.lower().endswith(".gguf") or _SKIP_RE.search(name):
            continue
        m = SPLIT_RE.match(name)
        key = str(PurePosixPath(f.path).parent / m.group("stem")) + f"/{m.group('count')}" if m else f.path
        groups.setdefault(key, []).append(f)
    out = []
    for key, parts in groups.items():
        parts.sort(key=lambda f: f.path)
        out.append(QuantGroup(quant_label(parts[0].path), parts))
    return out


def list_repo(repo: str, revision: str | None = None) -> RepoListing:
    """One request (model_info with files_metadata): every file's size and LFS sha256, and the commit."""
    require_online(f"listing {repo}")
    # huggingface_hub: loaded when this runs, not at start-up
    from huggingface_hub import HfApi

    with hub_errors(f"listing {repo}"):
        info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision, files_metadata=True)
    files = []
    for s in info.siblings or []:
        sha = s.lfs.sha256 if s.lfs else None
        files.append(RemoteFile(s.rfilename, int(s.size or (s.lfs.size if s.lfs else 0) or 0),
                                sha if sha and _SHA256_RE.match(sha) else None, s.blob_id))
    return RepoListing(repo, revision or "main", info.sha, group_quants(files))


def select_quant(listing: RepoListing, ref: HubRef) -> QuantGroup:
    """The group a reference names; a clear error listing what exists otherwise."""
    available = ", ".join(g.quant for g in listing.quants) or "none"
    if not listing.quants:
        raise HubError(f"{listing.repo} has no GGUF files")
    if ref.file:
        for g in listing.quants:
            if any(f.path == ref.file for f in g.files):
                return g
        raise HubError(f"{listing.repo} has no file {ref.file!r} (quants: {available})")
    if ref.quant is None:
        if len(listing.quants) == 1:
            return listing.quants[0]
        want = DEFAULT_QUANT
    else:
        want = ref.quant
    matches = [g for g in listing.quants if g.quant.upper() == want.upper()]
    if not matches:  # llama.cpp also accepts "Q4_K_XL" for "UD-Q4_K_XL"
        matches = [g for g in listing.quants if g.quant.upper().removeprefix("UD-") == want.upper()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        what = f"quant {want}" if ref.quant else f"a default quant ({DEFAULT_QUANT})"
        raise HubError(f"{listing.repo} has no {what}; available: {available}")
    names = ", ".join(g.first.path for g in matches)
    raise HubError(f"{listing.repo}: {want} is ambiguous ({names}); name the file: {listing.repo}/FILE.gguf")
