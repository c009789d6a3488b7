"""Fetch a file over HTTP(S) into a cache, verified by its sha256 (the demo scene, for one)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from .atomic import atomic_path
from .errors import RsGhostError

CHUNK = 1 << 20


class DownloadError(RsGhostError):
    """A download failed or gave the wrong bytes; nothing was kept."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: str | os.PathLike, sha256: str, timeout: float = 60.0) -> Path:
    """Return ``dest`` holding the file at ``url`` with the given sha256, downloading it if needed.

    A file already at ``dest`` with the right checksum is kept. The download goes to a
    temporary name (core/atomic.py) and is moved into place only when its checksum matches.
    """
    dest = Path(dest)
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    if urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(f"Refusing to download {url}: only http and https addresses are allowed.")
    try:
        with atomic_path(dest) as partial:
            digest = _download(url, partial, timeout)
            if digest != sha256:
                raise DownloadError(
                    f"The file downloaded from {url} has sha256 {digest}, not the expected {sha256}: it is corrupt "
                    f"or the source changed. Nothing was kept; try again, or put the right file at {dest}."
                )
    except (urllib.error.URLError, OSError) as error:
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise DownloadError(
            f"Could not download {url} ({reason}). Check the network connection, or put the file at {dest} yourself."
        ) from None
    return dest


def _download(url: str, path: Path, timeout: float) -> str:
    """Stream ``url`` into ``path``; return the hex sha256 of what arrived."""
    digest = hashlib.sha256()
    # fetch checks the scheme first: no file:// or custom schemes reach urlopen.
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:  # nosec B310
        for chunk in iter(lambda: response.read(CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()
