"""Where the hub is, whether we may reach it, and how its failures become one-line HubErrors.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_CACHE once, at import. moetui reads them again
at call time (falling back to huggingface_hub's values), so a setting changed after import, as the TUI or a
test may do, is honoured by every call moetui makes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from moetui.errors import HubError, network_reason
from urllib.parse import urlsplit
import socket

# huggingface_hub and httpx2: imported inside the functions that need them, to keep start-up fast

_TRUE = {"1", "on", "yes", "true"}


def endpoint() -> str:
    from huggingface_hub import constants  # huggingface_hub costs start-up time: only when the hub is asked

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    raw = os.environ.get("HF_HUB_OFFLINE")
    if raw is not None:
        return raw.strip().lower() in _TRUE
    from huggingface_hub import constants  # heavy: only when the environment does not answer

    return bool(constants.HF_HUB_OFFLINE)


# What a user can still do without the hub: said by every hub step that finds it unreachable
OFFLINE_ALTERNATIVES = ("what works offline: your local GGUFs (`moetui models`), the demo model (`moetui demo`), "
                        "any catalog model's proxy for planning (`moetui plan qwen3-30b-a3b`) and what-if rigs "
                        "(`--rig NAME`; `moetui detect --rig list`)")


def unreachable_reason(timeout_s: float = 2.0) -> str | None:
    """None when the hub's host accepts a connection; else why not, in a few words (no HTTP request)."""
    if is_offline():
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"cannot reach {host}: {network_reason(exc)}"
    return None


def require_online(what: str) -> None:
    if is_offline():
        raise HubError(f"offline: {what} needs the Hugging Face hub and HF_HUB_OFFLINE is set "
                       f"(local models keep working; unset HF_HUB_OFFLINE to go online)")


def hf_cache_dir() -> Path:
    """The standard HF hub cache (the one llama.cpp -hf, transformers and `hf download` share)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    from huggingface_hub import constants  # heavy: only when the environment does not answer

    return Path(constants.HF_HUB_CACHE)


def auth_headers() -> dict[str, str]:
    """huggingface_hub's standard headers: user agent plus the token from HF_TOKEN or `hf auth login`."""
    from huggingface_hub.utils import build_hf_headers  # heavy: only when the hub is asked

    return build_hf_headers()


@contextlib.contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn huggingface_hub / httpx failures into a HubError whose one line says what to do."""
    import httpx2  # heavy (httpx2, huggingface_hub): only around a hub call
    from huggingface_hub import errors as hfe

    try:
        yield
    except HubError:
        raise
    except hfe.OfflineModeIsEnabled as exc:
        raise HubError(f"offline: {what}: HF_HUB_OFFLINE is set") from exc
    except hfe.GatedRepoError as exc:
        raise HubError(f"{what}: the repository is gated; accept its terms on the hub and log in "
                       f"(`hf auth login` or HF_TOKEN)") from exc
    except hfe.RepositoryNotFoundError as exc:
        raise HubError(f"{what}: repository not found (or private: log in with `hf auth login` or HF_TOKEN)") from exc
    except hfe.RevisionNotFoundError as exc:
        raise HubError(f"{what}: revision not found") from exc
    except hfe.EntryNotFoundError as exc:
        raise HubError(f"{what}: file not found in the repository") from exc
    except hfe.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise HubError(f"{what}: the hub answered HTTP {status}") from exc
    except (httpx2.ConnectError, httpx2.TimeoutException) as exc:
        raise HubError(f"offline: {what}: cannot reach {endpoint()}: {network_reason(exc)}") from exc
    except httpx2.HTTPError as exc:
        raise HubError(f"{what}: the connection to {endpoint()} failed: {network_reason(exc)}") from exc
