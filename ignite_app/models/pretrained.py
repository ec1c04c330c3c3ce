"""Pretrained weight files in the zoos' own caches: found there first, downloaded at most once, bounded offline.

torchvision's weights (and timm's few URL-hosted ones) live where ``torch.hub`` keeps them,
``$TORCH_HOME/hub/checkpoints/<file name of the URL>``; timm's Hugging Face weights in the Hugging Face cache
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``). Both folders are read from the
environment at call time, so a test (or a user) can point them elsewhere.

Without a cached copy, ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) refuses at once, for both zoos.
Otherwise one HEAD request, given at most :data:`DEFAULT_TIMEOUT_S` seconds of wall-clock time (DNS included),
decides whether the network can be reached; only then does the download start, with the same timeout on every
socket read. Either way a failure is one :class:`UsageError` that names the cache folder and ``--weights``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from ignite_app.errors import UsageError

DEFAULT_TIMEOUT_S = 10.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HF_ENDPOINT = "https://huggingface.co"
# timm prefers a safetensors twin of a pickled file on the hub (timm.models._hub._get_safe_alternatives).
_SAFE_ALTERNATIVES = {"pytorch_model.bin": "model.safetensors",
                      "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}


@dataclass(frozen=True)
class WeightsSource:
    """Where a network's pretrained weights come from: a URL (torch.hub cache) or a Hugging Face repository."""

    kind: Literal["url", "hf-hub"]
    location: str                       # the URL, or the repository id ("timm/resnet18.a1_in1k")
    filenames: tuple[str, ...] = ()     # hf-hub: the files to try, preferred first
    revision: str | None = None         # hf-hub: a branch, tag or commit; None: main

    def cache_dir(self) -> Path:
        """The folder this source's files are cached in."""
        return torch_checkpoints_dir() if self.kind == "url" else hf_cache_dir()

    def expected_path(self) -> Path:
        """Where the (first) file lands in the cache; for the error message and for tests that plant one."""
        if self.kind == "url":
            return self.cache_dir() / url_filename(self.location)
        folder = "models--" + self.location.replace("/", "--")
        return self.cache_dir() / folder / "snapshots" / "<commit>" / self.filenames[0]


def is_offline() -> bool:
    """Whether the Hugging Face offline switch is on; read at call time (huggingface_hub reads it at import)."""
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for v in OFFLINE_VARIABLES)


def torch_checkpoints_dir() -> Path:
    """``torch.hub``'s checkpoint cache: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment as huggingface_hub does at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def url_filename(url: str) -> str:
    """The cache file name torch.hub gives a URL: the last path component."""
    return os.path.basename(urlparse(url).path)


def timm_source(pretrained_cfg: dict[str, Any]) -> WeightsSource | None:
    """The source timm's ``pretrained=True`` would load from (``_resolve_pretrained_source``), or None."""
    hub_id, url = pretrained_cfg.get("hf_hub_id"), pretrained_cfg.get("url")
    if hub_id:
        repo, _, revision = hub_id.partition("@")
        filename = pretrained_cfg.get("hf_hub_filename") or "pytorch_model.bin"
        safe = _SAFE_ALTERNATIVES.get(filename)
        return WeightsSource("hf-hub", repo, (safe, filename) if safe else (filename,), revision or None)
    return WeightsSource("url", url) if url else None


def cached_file(source: WeightsSource) -> Path | None:
    """The cached file of ``source``, or None; never touches the network."""
    if source.kind == "url":
        path = source.expected_path()
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    for filename in source.filenames:
        # A str is a file; None or a "known not to exist" sentinel is not.
        found = try_to_load_from_cache(source.location, filename, cache_dir=hf_cache_dir(),
                                       revision=source.revision)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def fetch(source: WeightsSource, what: str, timeout_s: float | None = None) -> Path:
    """The cached weights file of ``source``, downloading it first if needed and the network answers.

    Args:
        source: Where the weights come from.
        what: The network's name, for the error message.
        timeout_s: Seconds to wait for the network (the whole reachability check, then each socket read);
            None: :data:`DEFAULT_TIMEOUT_S`.

    Raises:
        UsageError: Not cached and offline, unreachable within ``timeout_s``, or the download failed.
    """
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    path = cached_file(source)
    if path is not None:
        return path
    if is_offline():
        raise _not_cached(source, what, "offline mode is on (HF_HUB_OFFLINE=1)")
    probe = source.location if source.kind == "url" else _hf_url(source, source.filenames[0])
    problem = unreachable(probe, timeout_s)
    if problem is not None:
        raise _not_cached(source, what, f"the network could not be reached within {timeout_s:g} s ({problem})")
    try:
        return _download(source, timeout_s)
    except Exception as err:  # whatever broke the download (HTTP status, hash, disk), the user's options are the same
        raise _not_cached(source, what, f"the download failed ({type(err).__name__}: {err})") from err


def unreachable(url: str, timeout_s: float) -> str | None:
    """Why ``url``'s server cannot be reached within ``timeout_s`` seconds of wall-clock time, or None if it answers.

    urlopen's own timeout covers connecting and reading but not the DNS lookup, so the request runs in a daemon
    thread that is abandoned when the time is up. Any HTTP status counts as an answer.
    """
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            # A fresh opener reads the proxy variables now; urlopen's shared one keeps those of its first use.
            opener = urllib.request.build_opener()
            with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
                outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered, with an error status: the network works
        except (OSError, ValueError) as err:  # URLError, socket.timeout, ConnectionRefusedError...
            outcome.append(f"{type(err).__name__}: {getattr(err, 'reason', err)}")

    thread = threading.Thread(target=attempt, name="zoo-reachability", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else f"no answer from {urlparse(url).netloc}"


def _hf_url(source: WeightsSource, filename: str) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")
    return f"{endpoint}/{source.location}/resolve/{source.revision or 'main'}/{filename}"


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torch.hub.download_url_to_file calls urlopen without a timeout, so the process default applies. The app
    # builds its network before any other thread opens sockets, so changing the default briefly is safe.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(source: WeightsSource, timeout_s: float) -> Path:
    if source.kind == "url":
        import torch.hub

        path = source.expected_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(path.name)  # torch.hub checks the hash prefix in the name, as here
        with _socket_timeout(timeout_s):
            torch.hub.download_url_to_file(source.location, str(path), match.group(1) if match else None,
                                           progress=True)
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    for filename in source.filenames:
        try:
            return Path(hf_hub_download(source.location, filename, revision=source.revision,
                                        cache_dir=hf_cache_dir(), etag_timeout=timeout_s))
        except EntryNotFoundError as err:
            if isinstance(err, LocalEntryNotFoundError):  # no answer from the hub, not a missing file
                raise
            continue  # the repository has the other format
    raise FileNotFoundError(f"none of {', '.join(source.filenames)} is in {source.location}")


def _not_cached(source: WeightsSource, what: str, reason: str) -> UsageError:
    return UsageError(
        f"the pretrained weights of {what} are not in the cache folder {source.cache_dir()} (looked for "
        f"{source.expected_path()}) and {reason}; download them there on a machine with network access, "
        "or pass a local weights file with --weights FILE")
