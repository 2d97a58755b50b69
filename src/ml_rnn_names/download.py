"""Download the PyTorch tutorial's names data once, verify every file, and cache it.

A file whose SHA-256 differs from the list shipped with this package is an error, never used: a
silently different dataset would make every number downstream incomparable.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

from ml_rnn_names.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_URL = "https://download.pytorch.org/tutorial/data.zip"
URL_ENV = "ML_RNN_NAMES_DATA_URL"
CACHE_ENV = "ML_RNN_NAMES_CACHE"
_MEMBER_PREFIX = "data/names/"


def expected_checksums() -> dict[str, str]:
    """``{file name: sha256}`` of the tutorial's 18 names files, shipped as ``names.sha256``."""
    text = resources.files("ml_rnn_names").joinpath("names.sha256").read_text(encoding="utf-8")
    sums: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest
    return sums


def cache_dir() -> Path:
    """``$ML_RNN_NAMES_CACHE``, else ``$XDG_CACHE_HOME/ml_rnn_names``, else ``~/.cache/ml_rnn_names``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ml_rnn_names"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_folder(folder: Path, checksums: dict[str, str] | None = None) -> None:
    """Raise :class:`DataError` naming the first missing or mismatching file."""
    checksums = checksums or expected_checksums()
    for name, digest in sorted(checksums.items()):
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing from the downloaded names data")
        actual = _sha256(path)
        if actual != digest:
            raise DataError(
                f"{path}: SHA-256 {actual[:16]}… does not match the expected {digest[:16]}…; "
                "the download is corrupt or the upstream data changed. Delete the folder to retry, or "
                f"point ${'ML_RNN_NAMES_DATA'} at a copy you trust"
            )


def ensure_downloaded(url: str | None = None, target_root: Path | None = None) -> Path:
    """Return a verified ``names`` folder, downloading ``data.zip`` into the cache first if needed."""
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    root = target_root or cache_dir()
    folder = root / "names"
    checksums = expected_checksums()
    if folder.is_dir():
        verify_folder(folder, checksums)
        return folder
    root.mkdir(parents=True, exist_ok=True)
    log.info("downloading the names data from %s into %s", url, root)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            payload = response.read()
    except OSError as exc:
        raise DataError(
            f"could not download the names data from {url}: {exc}; download it by hand and set "
            "$ML_RNN_NAMES_DATA to its names/ folder"
        ) from exc
    staging = Path(tempfile.mkdtemp(prefix="names.", dir=root))
    try:
        try:
            archive = zipfile.ZipFile(io.BytesIO(payload))
        except zipfile.BadZipFile as exc:
            raise DataError(f"{url}: the download is not a zip file ({exc})") from exc
        with archive:
            for name in checksums:
                member = _MEMBER_PREFIX + name
                try:
                    data = archive.read(member)
                except KeyError:
                    raise DataError(f"{url}: the archive has no {member}") from None
                (staging / name).write_bytes(data)
        verify_folder(staging, checksums)
        try:
            staging.rename(folder)  # atomic: a half-extracted folder is never seen as the cache
        except OSError:
            if not folder.is_dir():
                raise
            # Another process (a second study worker) finished the same download first: use its copy.
            verify_folder(folder, checksums)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder
