"""Dataset downloads, for real: files served over file:// and a local http.server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest
from conftest import shared_dataset
from rich.console import Console

from guim.data import download as dl
from guim.data.download import ChecksumError, DownloadError, fetch, source_of
from guim.data.schema import DataError
from guim.io import read_json

SPORTS = ("Sports_and_Outdoors.txt", "Sports_and_Outdoors_item2attributes.json")


class _Server:
    """A static file server over a directory that records the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("GUIM_CACHE_DIR", str(root))
    monkeypatch.delenv("GUIM_DATASETS_MIRROR", raising=False)
    return root


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    root.mkdir()
    return root


@pytest.fixture
def server(mirror: Path) -> Iterator[_Server]:
    srv = _Server(mirror)
    yield srv
    srv.close()


@pytest.fixture(params=["file", "http"])
def base_url(request: pytest.FixtureRequest, mirror: Path) -> str:
    """The mirror as a file:// URL or as a local HTTP server."""
    if request.param == "file":
        return mirror.as_uri()
    return request.getfixturevalue("server").url


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_sports(directory: Path, users: int = 5) -> None:
    lines = [f"{u} " + " ".join(str(i) for i in range(u, u + 4)) for u in range(1, users + 1)]
    (directory / SPORTS[0]).write_text("\n".join(lines) + "\n")
    (directory / SPORTS[1]).write_text('{"1": [1, 2], "2": [3]}')


def _movielens_files() -> dict[str, str]:
    return {
        "u.data": "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n",
        "u.item": "1|Toy Story (1995)|01-Jan-1995||\n2|GoldenEye (1995)|01-Jan-1995||\n",
        "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
    }


def _write_zip(path: Path, files: dict[str, str], top: str = "ml-100k") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/", "")
        for name, text in files.items():
            zf.writestr(f"{top}/{name}", text)
    return path


@pytest.fixture
def unpinned_ml100k(monkeypatch: pytest.MonkeyPatch) -> None:
    """ml-100k with its checksums removed, so that a small generated zip stands in for it."""
    spec = dl.DATASETS["ml-100k"]
    files = tuple(dataclasses.replace(f, sha256=None, md5=None) for f in spec.files)
    monkeypatch.setitem(dl.DATASETS, "ml-100k", dataclasses.replace(spec, files=files))


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- registry -------------------------------------------------------------------------------------


def test_registry_urls_and_formats() -> None:
    assert list(dl.DATASETS) == ["beauty", "sports", "toys", "yelp", "lastfm", "ml-100k", "ml-1m"]
    s3 = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/"
    assert [f.url() for f in dl.DATASETS["sports"].files] == [s3 + name for name in SPORTS]
    ml1m = dl.DATASETS["ml-1m"]
    assert ml1m.format == "grouplens"
    assert [f.url() for f in ml1m.files] == [
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    ]
    for spec in dl.DATASETS.values():
        for f in spec.files:
            assert f.sha256 is None or len(bytes.fromhex(f.sha256)) == 32
            assert f.md5 is None or len(bytes.fromhex(f.md5)) == 16
    assert dl.DATASETS["ml-100k"].files[0].url("http://m/") == "http://m/ml-100k.zip"


@pytest.mark.parametrize("name", ["beauty", "lastfm"])
def test_pinned_checksums_match_the_shared_copies(name: str) -> None:
    for f in dl.DATASETS[name].files:
        assert _sha(shared_dataset("s3rec", f.name)) == f.sha256


def test_unknown_name_lists_the_known_ones(cache: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'beautty'") as e:
        fetch("beautty")
    for name in dl.DATASETS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="known:"):
        source_of("nope", cache)


def test_cache_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUIM_CACHE_DIR", str(tmp_path))
    assert dl.cache_dir() == tmp_path
    monkeypatch.delenv("GUIM_CACHE_DIR")
    assert dl.cache_dir() == Path(platformdirs.user_cache_dir("guim")) / "datasets"


# --- downloads ------------------------------------------------------------------------------------


def test_download_real_s3rec_files(cache: Path, mirror: Path, base_url: str) -> None:
    for name in ("Beauty.txt", "Beauty_item2attributes.json"):
        shutil.copy(shared_dataset("s3rec", name), mirror / name)
    root = fetch("beauty", base_url=base_url, show_progress=False)
    assert root == cache / "beauty"
    for f in dl.DATASETS["beauty"].files:
        assert _sha(root / f.name) == f.sha256
        assert (root / f.name).read_bytes() == (mirror / f.name).read_bytes()
    assert source_of("beauty", root) == ("s3rec", root / "Beauty.txt")
    manifest = read_json(root / "manifest.json")
    assert manifest["complete"] and manifest["format"] == "s3rec"
    assert manifest["files"]["Beauty.txt"]["checksum"] == "pinned"
    assert manifest["files"]["Beauty.txt"]["source"] == f"{base_url}/Beauty.txt"
    assert _files_under(cache) == [
        f"beauty/{n}" for n in ("Beauty.txt", "Beauty_item2attributes.json", "manifest.json")
    ]


def test_corrupt_download_is_rejected_and_leaves_nothing(
    cache: Path, mirror: Path, base_url: str
) -> None:
    (mirror / "Beauty.txt").write_text("1 2 3\n")  # not the pinned file
    with pytest.raises(ChecksumError) as e:
        fetch("beauty", base_url=base_url, show_progress=False)
    pinned = dl.DATASETS["beauty"].files[0].sha256
    message = str(e.value)
    assert f"{base_url}/Beauty.txt" in message
    assert pinned in message and _sha(mirror / "Beauty.txt") in message
    assert not cache.exists() or _files_under(cache) == []
    assert not (cache / "beauty").exists()


def test_pinned_zip_rejects_other_bytes(cache: Path, mirror: Path, base_url: str) -> None:
    _write_zip(mirror / "ml-100k.zip", _movielens_files())
    with pytest.raises(ChecksumError, match="0e33842e24a9c977be4e0107933c0723"):
        fetch("ml-100k", base_url=base_url, show_progress=False)
    assert not (cache / "ml-100k").exists()


def test_second_fetch_uses_the_cache(cache: Path, mirror: Path, server: _Server, capsys) -> None:
    _write_sports(mirror)
    root = fetch("sports", base_url=server.url, show_progress=False)
    assert sorted(server.requests) == sorted(f"/{n}" for n in SPORTS)
    assert fetch("sports", base_url=server.url, show_progress=False) == root
    assert len(server.requests) == 2  # verified against the recorded checksums, not downloaded
    # a damaged cached file is downloaded again (only that one), and checked
    (root / SPORTS[0]).write_text("damaged\n")
    fetch("sports", base_url=server.url, show_progress=False)
    assert server.requests[2:] == [f"/{SPORTS[0]}"]
    assert (root / SPORTS[0]).read_bytes() == (mirror / SPORTS[0]).read_bytes()
    assert "Downloading it again" in capsys.readouterr().err
    # force downloads again
    fetch("sports", base_url=server.url, force=True, show_progress=False)
    assert len(server.requests) == 5


def test_trust_on_first_use(cache: Path, mirror: Path, base_url: str, capsys) -> None:
    _write_sports(mirror)
    root = fetch("sports", base_url=base_url, show_progress=False)
    err = capsys.readouterr().err
    assert "no published checksum" in err and f"{base_url}/{SPORTS[0]}" in err
    manifest = read_json(root / "manifest.json")
    first = {n: _sha(mirror / n) for n in SPORTS}
    assert manifest["trusted"] == first
    assert manifest["files"][SPORTS[0]]["checksum"] == "recorded"
    # the source changes: a new download no longer matches what was trusted
    _write_sports(mirror, users=6)
    with pytest.raises(ChecksumError) as e:
        fetch("sports", base_url=base_url, force=True, show_progress=False)
    assert first[SPORTS[0]] in str(e.value) and _sha(mirror / SPORTS[0]) in str(e.value)
    assert f"{base_url}/{SPORTS[0]}" in str(e.value)
    assert _sha(root / SPORTS[0]) == first[SPORTS[0]]  # the cached copy is untouched
    assert read_json(root / "manifest.json")["trusted"] == first
    # nor does a cached file that was lost and is fetched again
    (root / SPORTS[0]).unlink()
    with pytest.raises(ChecksumError):
        fetch("sports", base_url=base_url, show_progress=False)
    assert not (root / SPORTS[0]).exists()


def test_zip_download_is_extracted(
    cache: Path, mirror: Path, server: _Server, unpinned_ml100k: None
) -> None:
    files = _movielens_files()
    _write_zip(mirror / "ml-100k.zip", files)
    root = fetch("ml-100k", base_url=server.url, show_progress=False)
    fmt, path = source_of("ml-100k", root)
    assert (fmt, path) == ("grouplens", root / "ml-100k")
    assert {p.name: p.read_text() for p in path.iterdir()} == files
    assert read_json(root / "manifest.json")["trusted"]["ml-100k.zip"] == _sha(
        mirror / "ml-100k.zip"
    )
    # a lost extracted file is restored from the cached zip, without downloading
    (path / "u.user").unlink()
    fetch("ml-100k", base_url=server.url, show_progress=False)
    assert (path / "u.user").read_text() == files["u.user"]
    assert server.requests == ["/ml-100k.zip"]


def test_progress_bar_shows_bytes(
    cache: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(
        dl, "console", Console(file=out, force_terminal=True, width=120, color_system=None)
    )
    (mirror / SPORTS[0]).write_bytes(b"1 2 3\n" * 50_000)
    (mirror / SPORTS[1]).write_text("{}")
    fetch("sports", base_url=mirror.as_uri(), show_progress=True)
    text = out.getvalue()
    assert SPORTS[0] in text and "300.0/300.0 kB" in text and "sports:" in text


def test_zip_without_the_ratings_file_is_refused(
    cache: Path, mirror: Path, unpinned_ml100k: None
) -> None:
    _write_zip(mirror / "ml-100k.zip", {"README": "x"})
    with pytest.raises(DataError, match=r"holds no u\.data"):
        fetch("ml-100k", base_url=mirror.as_uri(), show_progress=False)
    assert not (cache / "ml-100k" / "ml-100k").exists()


def test_zip_download_over_file_url(cache: Path, mirror: Path, unpinned_ml100k: None) -> None:
    _write_zip(mirror / "ml-100k.zip", _movielens_files())
    root = fetch("ml-100k", base_url=mirror.as_uri(), show_progress=False)
    assert (root / "ml-100k" / "u.data").read_text() == _movielens_files()["u.data"]


def test_zip_with_unsafe_paths_is_refused(cache: Path, mirror: Path, unpinned_ml100k: None) -> None:
    with zipfile.ZipFile(mirror / "ml-100k.zip", "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t1\n")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="unsafe path"):
        fetch("ml-100k", base_url=str(mirror), show_progress=False)  # a plain path as mirror
    assert not (cache / "evil.txt").exists() and not (cache / "ml-100k" / "ml-100k").exists()


def test_missing_file_names_the_url(cache: Path, mirror: Path, base_url: str) -> None:
    with pytest.raises(DownloadError) as e:
        fetch("toys", base_url=base_url, show_progress=False)
    assert f"{base_url}/Toys_and_Games.txt" in str(e.value)
    if base_url.startswith("http"):
        assert "HTTP 404" in str(e.value)
    assert not (cache / "toys").exists()


def test_mirror_from_env(cache: Path, mirror: Path, server: _Server, monkeypatch) -> None:
    _write_sports(mirror)
    monkeypatch.setenv("GUIM_DATASETS_MIRROR", server.url + "/")
    fetch("sports", show_progress=False)
    assert sorted(server.requests) == sorted(f"/{n}" for n in SPORTS)


# --- local copies (from_dir) ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["beauty", "lastfm"])
def test_from_dir_s3rec(cache: Path, name: str) -> None:
    src = shared_dataset("s3rec")
    root = fetch(name, from_dir=src, show_progress=False)
    for f in dl.DATASETS[name].files:
        assert (root / f.name).read_bytes() == (src / f.name).read_bytes()
    assert read_json(root / "manifest.json")["origin"] == "local"
    # later fetches use the verified copy, without a network (this mirror does not exist)
    assert fetch(name, base_url="file:///nonexistent", show_progress=False) == root
    (root / dl.DATASETS[name].main_file).write_text("1 2\n")
    with pytest.raises(ChecksumError, match="--from"):
        fetch(name, base_url="file:///nonexistent", show_progress=False)


def test_from_dir_checks_pinned_checksums(cache: Path, tmp_path: Path) -> None:
    src = tmp_path / "mine"
    src.mkdir()
    (src / "Beauty.txt").write_text("1 2 3\n")
    with pytest.raises(ChecksumError, match=dl.DATASETS["beauty"].files[0].sha256):
        fetch("beauty", from_dir=src / "Beauty.txt", show_progress=False)
    assert not (cache / "beauty").exists()


def test_from_dir_recbole_ml100k(cache: Path) -> None:
    src = shared_dataset("ml-100k")
    root = fetch("ml-100k", from_dir=src, show_progress=False)
    assert source_of("ml-100k", root) == ("recbole", root)
    for ext in ("inter", "item", "user"):
        assert _sha(root / f"ml-100k.{ext}") == _sha(src / f"ml-100k.{ext}")
    assert read_json(root / "manifest.json")["format"] == "recbole"
    # the parent directory works too (<from>/ml-100k)
    assert fetch("ml-100k", from_dir=src.parent, show_progress=False) == root


@pytest.mark.parametrize("nested", [False, True])
def test_from_dir_extracted_grouplens(cache: Path, tmp_path: Path, nested: bool) -> None:
    src = tmp_path / "downloads" / ("ml-100k" if nested else "")
    src.mkdir(parents=True, exist_ok=True)
    for name, text in _movielens_files().items():
        (src / name).write_text(text)
    root = fetch("ml-100k", from_dir=tmp_path / "downloads", show_progress=False)
    fmt, path = source_of("ml-100k", root)
    assert (fmt, path) == ("grouplens", root / "ml-100k")
    assert {p.name: p.read_text() for p in path.iterdir()} == _movielens_files()


def test_switching_layouts_keeps_one_copy(
    cache: Path, tmp_path: Path, mirror: Path, unpinned_ml100k: None
) -> None:
    files = _movielens_files()
    _write_zip(mirror / "ml-100k.zip", files)
    recbole = tmp_path / "recbole"
    recbole.mkdir()
    (recbole / "ml-100k.inter").write_text("user_id:token\titem_id:token\n1\t1\n")
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    for name, text in list(files.items())[:2]:
        (extracted / name).write_text(text)

    root = fetch("ml-100k", from_dir=mirror, show_progress=False)  # the zip, copied
    assert _files_under(root) == ["manifest.json", "ml-100k.zip", *(f"ml-100k/{n}" for n in files)]
    fetch("ml-100k", from_dir=recbole, show_progress=False)
    assert source_of("ml-100k", root) == ("recbole", root)
    assert _files_under(root) == ["manifest.json", "ml-100k.inter"]
    # a failed download does not destroy the copy that works
    with pytest.raises(DownloadError):
        fetch("ml-100k", force=True, base_url="file:///nonexistent", show_progress=False)
    assert source_of("ml-100k", root) == ("recbole", root)
    assert fetch("ml-100k", base_url="file:///nonexistent", show_progress=False) == root
    fetch("ml-100k", from_dir=extracted, show_progress=False)
    assert source_of("ml-100k", root) == ("grouplens", root / "ml-100k")
    assert _files_under(root) == ["manifest.json", "ml-100k/u.data", "ml-100k/u.item"]
    fetch("ml-100k", force=True, base_url=mirror.as_uri(), show_progress=False)
    assert _files_under(root) == ["manifest.json", "ml-100k.zip", *(f"ml-100k/{n}" for n in files)]
    assert read_json(root / "manifest.json")["origin"] == "download"


def test_from_dir_without_the_files(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"no local copy of ml-1m found: expected one of ratings\.dat, ml-1m\.zip"
    ):
        fetch("ml-1m", from_dir=tmp_path, show_progress=False)
    with pytest.raises(DataError, match="no such file"):
        fetch("ml-1m", from_dir=tmp_path / "absent", show_progress=False)
    with pytest.raises(DataError, match="no ml-1m files"):
        source_of("ml-1m", tmp_path)
