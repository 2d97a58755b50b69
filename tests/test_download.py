"""Download, verify and cache the names data: all offline, from a zip built in tmp.

The packaged checksums are replaced by those of the tiny files, and the zip is served from a file://
URL or from an HTTP server on 127.0.0.1 in a thread. Nothing here touches the real network.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import re
import socket
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_rnn_names import download
from ml_rnn_names.data import load_splits
from ml_rnn_names.download import cache_dir, ensure_downloaded, expected_checksums, verify_folder
from ml_rnn_names.errors import DataError

FILES = {
    "Alpha.txt": b"Abe\nAda\nAmos\nAnton\nArne\nAsa\n",
    "Beta.txt": b"Bob\nBill\nBo\nBrun\nBart\nBea\n",
}


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/eng-fra.txt", "the tutorial zip holds other data too\n")
        for name, content in files.items():
            archive.writestr(f"data/names/{name}", content)
    return buffer.getvalue()


@pytest.fixture
def checksums(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    sums = {name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()}
    monkeypatch.setattr(download, "expected_checksums", lambda: dict(sums))
    return sums


@pytest.fixture
def serve_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "data.zip").write_bytes(_zip_bytes(FILES))
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server(serve_dir: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    handler = functools.partial(_QuietHandler, directory=str(serve_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _url(server: http.server.ThreadingHTTPServer, path: str = "/data.zip") -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the cache must be used without opening any URL")


def test_packaged_checksums_cover_the_18_tutorial_files() -> None:
    sums = expected_checksums()
    assert len(sums) == 18
    assert "Russian.txt" in sums and "Vietnamese.txt" in sums
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in sums.values())


def test_the_real_data_matches_the_packaged_checksums(real_data_dir: Path) -> None:
    verify_folder(real_data_dir, expected_checksums())


def test_download_from_file_url_is_verified_cached_and_reused(
    checksums, serve_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "cache"
    url = (serve_dir / "data.zip").as_uri()
    folder = ensure_downloaded(url, target_root=root)
    assert folder == root / "names"
    assert sorted(p.name for p in folder.iterdir()) == ["Alpha.txt", "Beta.txt"]  # eng-fra.txt not copied
    assert (folder / "Beta.txt").read_bytes() == FILES["Beta.txt"]
    assert list(root.iterdir()) == [folder]  # no staging folder left behind

    (serve_dir / "data.zip").unlink()
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert ensure_downloaded(url, target_root=root) == folder


def test_download_over_http_then_cache_without_server(
    checksums, http_server, tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "cache"
    url = _url(http_server)
    folder = ensure_downloaded(url, target_root=root)
    verify_folder(folder, checksums)
    http_server.shutdown()
    http_server.server_close()
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert ensure_downloaded(url, target_root=root) == folder


def test_data_layer_falls_back_to_the_verified_download(
    checksums, serve_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ML_RNN_NAMES_CACHE", str(cache))
    monkeypatch.setenv("ML_RNN_NAMES_DATA_URL", (serve_dir / "data.zip").as_uri())
    monkeypatch.chdir(tmp_path)  # no ./data/names here
    splits = load_splits()
    assert splits.summary["source"] == str(cache / "names")
    assert splits.labels == ["Alpha", "Beta"]
    assert splits.summary["names_kept"] == 12


def test_tampered_file_is_refused_and_nothing_is_cached(checksums, tmp_path: Path) -> None:
    tampered = dict(FILES, **{"Beta.txt": FILES["Beta.txt"] + b"Mallory\n"})
    payload = tmp_path / "data.zip"
    payload.write_bytes(_zip_bytes(tampered))
    root = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        ensure_downloaded(payload.as_uri(), target_root=root)
    message = str(info.value)
    assert "Beta.txt: SHA-256" in message
    assert checksums["Beta.txt"][:16] in message
    assert "ML_RNN_NAMES_DATA" in message
    assert not (root / "names").exists()
    assert list(root.iterdir()) == []  # the staging folder was removed too


def test_archive_missing_a_file(checksums, tmp_path: Path) -> None:
    payload = tmp_path / "data.zip"
    payload.write_bytes(_zip_bytes({"Alpha.txt": FILES["Alpha.txt"]}))
    root = tmp_path / "cache"
    with pytest.raises(DataError, match=r"the archive has no data/names/Beta\.txt"):
        ensure_downloaded(payload.as_uri(), target_root=root)
    assert list(root.iterdir()) == []


def test_payload_that_is_not_a_zip(checksums, http_server, serve_dir: Path, tmp_path: Path) -> None:
    (serve_dir / "data.zip").write_text("<html>Service Unavailable</html>\n")
    url = _url(http_server)
    root = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        ensure_downloaded(url, target_root=root)
    assert str(info.value).startswith(f"{url}: the download is not a zip file")
    assert list(root.iterdir()) == []


def test_http_404_is_a_data_error(checksums, http_server, tmp_path: Path) -> None:
    url = _url(http_server, "/missing.zip")
    with pytest.raises(DataError, match=r"could not download the names data from .*404"):
        ensure_downloaded(url, target_root=tmp_path / "cache")


def test_unreachable_url_says_how_to_proceed_by_hand(checksums, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.zip"
    with pytest.raises(DataError) as info:
        ensure_downloaded(url, target_root=tmp_path / "cache")
    message = str(info.value)
    assert message.startswith(f"could not download the names data from {url}: ")
    assert "$ML_RNN_NAMES_DATA" in message
    assert not (tmp_path / "cache" / "names").exists()


def test_corrupt_cache_is_reported_not_used(checksums, serve_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    url = (serve_dir / "data.zip").as_uri()
    folder = ensure_downloaded(url, target_root=root)
    (folder / "Alpha.txt").write_bytes(b"Eve\n")
    with pytest.raises(DataError, match=r"Alpha\.txt: SHA-256 .* Delete the folder to retry"):
        ensure_downloaded(url, target_root=root)
    (folder / "Alpha.txt").unlink()
    with pytest.raises(DataError, match=r"Alpha\.txt: missing from the downloaded names data"):
        ensure_downloaded(url, target_root=root)


def test_a_concurrent_download_that_finished_first_is_used(
    checksums, serve_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Two study workers may download at once: the loser of the rename uses the winner's copy."""
    root = tmp_path / "cache"
    real_verify = download.verify_folder

    def verify_then_lose_the_race(folder: Path, sums: dict[str, str] | None = None) -> None:
        real_verify(folder, sums)
        winner = root / "names"
        if folder != winner and not winner.exists():
            winner.mkdir()
            for name, content in FILES.items():
                (winner / name).write_bytes(content)

    monkeypatch.setattr(download, "verify_folder", verify_then_lose_the_race)
    folder = ensure_downloaded((serve_dir / "data.zip").as_uri(), target_root=root)
    assert folder == root / "names"
    assert list(root.iterdir()) == [folder]


def test_cache_dir_precedence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ML_RNN_NAMES_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("ML_RNN_NAMES_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "ml_rnn_names"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ml_rnn_names"
