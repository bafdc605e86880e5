"""A hub repo's GGUF files as quants: sizes, sha256, split parts grouped into one entry.

A reference names a model on the hub the way llama.cpp's `-hf` does: `owner/repo:QUANT` (the quant label,
any case), or `owner/repo/path/to/file.gguf` (one file; a split model's parts are found from any part),
optionally `owner/repo@revision:QUANT`. `owner/repo` alone picks the only quant, else Q4_K_M.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import quote

from moetui.errors import HubError, first_line
from moetui.hardware.net_limits import MAX_LISTING_BYTES, MAX_LISTING_ENTRIES, ServerClaimError, check_size
from moetui.hub.bounded_http import Reply, bounded_get, host_of
from moetui.hub.connection import auth_headers, endpoint, require_online

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
    """One request (the hub's model info with every file's metadata): each file's size and LFS sha256, and
    the commit. Read with a deadline and a byte cap (bounded_get); every field checked before it is used."""
    require_online(f"listing {repo}")
    what = f"listing {repo}"
    url = f"{endpoint()}/api/models/{repo}" + (f"/revision/{quote(revision, safe='')}" if revision else "")
    reply = bounded_get(url, what=what, headers=auth_headers(), params={"blobs": True}, max_bytes=MAX_LISTING_BYTES)
    if reply.status != 200:
        raise HubError(f"{what}: {_status_words(reply)}")
    try:
        return parse_listing(reply.body, repo, revision, host_of(reply.url))
    except ServerClaimError as exc:
        raise HubError(f"{what}: {exc}") from None


def _status_words(reply: Reply) -> str:
    """What a refused listing means, as hub_errors says it for huggingface_hub's own calls."""
    code = reply.headers.get("x-error-code", "")
    if code == "GatedRepo":
        return "the repository is gated; accept its terms on the hub and log in (`hf auth login` or HF_TOKEN)"
    if code == "RevisionNotFound":
        return "revision not found"
    if code == "RepoNotFound" or reply.status in (401, 404):
        return "repository not found (or private: log in with `hf auth login` or HF_TOKEN)"
    return f"the hub answered HTTP {reply.status}"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_listing(body: bytes, repo: str, revision: str | None, host: str) -> RepoListing:
    """A hub listing's files, every field checked by type and range; ServerClaimError / HubError naming the
    host and the field otherwise (truncated or non-JSON bodies, wrong types, impossible sizes)."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise HubError(f"listing {repo}: {host} answered with JSON nested too deep to be a listing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "HTML" if body.lstrip()[:1] == b"<" else "not JSON" if body.strip() else "an empty body"
        raise HubError(f"listing {repo}: {host} answered with {kind}, not a hub listing ({first_line(exc, 80)})") from None
    if not isinstance(data, dict):
        raise ServerClaimError(host, "listing", f"a JSON {type(data).__name__}, not an object")
    siblings = data.get("siblings") or []
    if not isinstance(siblings, list):
        raise ServerClaimError(host, "siblings", f"a {type(siblings).__name__}, not a list")
    if len(siblings) > MAX_LISTING_ENTRIES:
        raise HubError(f"listing {repo}: {host} listed {len(siblings):,} files, more than {MAX_LISTING_ENTRIES:,} "
                       "(no model repo has that many); refused")
    commit = data.get("sha")
    if commit is not None and not isinstance(commit, str):
        raise ServerClaimError(host, "sha", f"{str(commit)[:40]!r} is not a commit id")
    return RepoListing(repo, revision or "main", commit, group_quants([_sibling(host, i, s) for i, s in enumerate(siblings)]))


def _sibling(host: str, i: int, s: object) -> RemoteFile:
    where = f"siblings[{i}]"
    if not isinstance(s, dict):
        raise ServerClaimError(host, where, f"a {type(s).__name__}, not an object")
    name = s.get("rfilename")
    if not isinstance(name, str) or not name or "\0" in name or len(name) > 1024:
        raise ServerClaimError(host, f"{where}.rfilename", f"{str(name)[:40]!r} is not a file name")
    lfs = s.get("lfs")
    if lfs is not None and not isinstance(lfs, dict):
        raise ServerClaimError(host, f"{where}.lfs", f"a {type(lfs).__name__}, not an object")
    size = s.get("size")
    if not size and lfs:  # the hub gives an LFS file's size in lfs.size (size may be absent or 0)
        size, where = lfs.get("size"), f"{where}.lfs"
    size = 0 if size is None else check_size(host, f"{where}.size of {name}", size)
    sha = lfs.get("sha256") if lfs else None
    blob = s.get("blobId")
    return RemoteFile(name, size, sha if isinstance(sha, str) and _SHA256_RE.match(sha) else None,
                      blob if isinstance(blob, str) else None)


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
