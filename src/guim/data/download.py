"""Download public datasets (S3-Rec preprocessed Amazon/Yelp/LastFM, MovieLens) into a local cache.

Every file is fetched with urllib (http(s):// or file://) into a temporary file, checked against
its pinned checksum (or, where none is published, against the SHA-256 recorded on first use in
`<cache>/<name>/manifest.json`), then renamed into place, so a failed download leaves nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import platformdirs
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from guim.data.schema import DataError
from guim.errors import UserError
from guim.io import atomic_dir, atomic_file, read_json, write_json
from guim.progress import console

CACHE_ENV = "GUIM_CACHE_DIR"
MIRROR_ENV = "GUIM_DATASETS_MIRROR"
MANIFEST = "manifest.json"
TIMEOUT_S = 60
_CHUNK = 1 << 16

S3REC_BASE = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data"
GROUPLENS_BASE = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name (in the source and in the cache) and its checksums."""

    name: str
    base_url: str
    sha256: str | None = None  # None: trust on first use (recorded in the manifest)
    md5: str | None = None  # only where the source publishes an MD5

    def url(self, mirror: str | None = None) -> str:
        return f"{(mirror or self.base_url).rstrip('/')}/{quote(self.name)}"


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable dataset. `format` names the loader of the downloaded files."""

    name: str
    format: str  # "s3rec" | "grouplens"
    description: str
    files: tuple[RemoteFile, ...]
    main_file: str  # s3rec: the <File>.txt; grouplens: the ratings file inside the archive
    archive: str | None = None  # a zip among `files`, extracted into <cache>/<name>/<zip stem>/


def _s3rec(
    name: str, stem: str, description: str, txt: str | None, attrs: str | None
) -> DatasetSpec:
    files = (
        RemoteFile(f"{stem}.txt", S3REC_BASE, txt),
        RemoteFile(f"{stem}_item2attributes.json", S3REC_BASE, attrs),
    )
    return DatasetSpec(name, "s3rec", description, files, main_file=f"{stem}.txt")


def _grouplens(name: str, marker: str, description: str, sha256: str, md5: str) -> DatasetSpec:
    files = (RemoteFile(f"{name}.zip", GROUPLENS_BASE, sha256, md5),)
    return DatasetSpec(name, "grouplens", description, files, marker, archive=f"{name}.zip")


# SHA-256 of beauty and lastfm: computed here from ../shared/datasets/s3rec (copies of the S3-Rec
# repository's data/ files). Sports, Toys and Yelp have no local copy and no published checksum:
# they are trusted on first use. MovieLens MD5s: GroupLens publishes <zip>.md5 beside each archive
# ("MD5 (ml-100k.zip) = 0e33...", quoted by several public projects; not fetched from here). Their
# SHA-256s are not published by GroupLens: they are the values that independent public projects
# (dataset fetchers and benchmark scripts) pin for the same URLs, each reported as matching the MD5.
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _s3rec(
            "beauty",
            "Beauty",
            "Amazon Beauty 5-core, S3-Rec preprocessing (22,363 users, 12,101 items)",
            "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
        ),
        _s3rec(
            "sports",
            "Sports_and_Outdoors",
            "Amazon Sports and Outdoors 5-core, S3-Rec preprocessing",
            None,
            None,
        ),
        _s3rec(
            "toys",
            "Toys_and_Games",
            "Amazon Toys and Games 5-core, S3-Rec preprocessing",
            None,
            None,
        ),
        _s3rec("yelp", "Yelp", "Yelp, S3-Rec preprocessing", None, None),
        _s3rec(
            "lastfm",
            "LastFM",
            "LastFM artists with tags, S3-Rec preprocessing (1,090 users, 3,646 artists)",
            "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
            "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
        ),
        _grouplens(
            "ml-100k",
            "u.data",
            "MovieLens 100K (943 users, 1,682 movies, 100,000 ratings; user and movie attributes)",
            sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            md5="0e33842e24a9c977be4e0107933c0723",
        ),
        _grouplens(
            "ml-1m",
            "ratings.dat",
            "MovieLens 1M (6,040 users, 1,000,209 ratings; user and movie attributes)",
            sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            md5="c4d9eecfca2ab87c1945afe126590906",
        ),
    )
}


class DownloadError(DataError):
    """A dataset file could not be fetched, or is not what it should be. Names the URL or path."""


class ChecksumError(DownloadError):
    """A file whose checksum differs from the pinned (or first-use) one."""

    def __init__(self, source: str, expected: str, actual: str, note: str = "") -> None:
        self.expected, self.actual = expected, actual
        super().__init__(
            source, f"checksum mismatch: expected {expected}, got {actual}. {note}".strip()
        )


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry of `name`; ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> Path:
    """$GUIM_CACHE_DIR, or the user cache directory's `guim/datasets`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("guim")) / "datasets"


_default_cache_dir = cache_dir  # `fetch` has a parameter of the same name


# --- the manifest: what the cache holds and the SHA-256s trusted on first use -------------------


_MANIFEST_KEYS = ("dataset", "format", "origin", "complete", "files", "trusted")


@dataclass
class _Manifest:
    path: Path
    dataset: str
    format: str
    origin: str = "download"  # or "local" (copied with from_dir)
    complete: bool = False
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    trusted: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256 seen first

    @classmethod
    def load(cls, root: Path, spec: DatasetSpec) -> _Manifest:
        path = root / MANIFEST
        if not path.exists():
            return cls(path, spec.name, spec.format)
        try:
            data = read_json(path)
            return cls(path, **{k: data[k] for k in _MANIFEST_KEYS})
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(path, f"unreadable manifest ({e}); delete it to start over") from None

    def save(self) -> None:
        write_json(self.path, {k: getattr(self, k) for k in _MANIFEST_KEYS})

    def begin(self, origin: str) -> None:
        """Mark the cache incomplete until a fetch (download or local copy) has finished."""
        self.origin, self.complete = origin, False
        if self.path.exists():
            self.save()

    def finish(
        self, root: Path, spec: DatasetSpec, origin: str, format: str, keep: set[str]
    ) -> None:
        """Mark the cache complete; delete the recorded files of a previous layout not in `keep`."""
        stem = Path(spec.archive).stem if spec.archive else None
        extracted_now = stem is not None and any(
            rel == spec.archive or PurePosixPath(rel).parts[0] == stem for rel in keep
        )
        for rel in set(self.files) - keep:
            if not (extracted_now and PurePosixPath(rel).parts[0] == stem):  # else already replaced
                with contextlib.suppress(FileNotFoundError):
                    (root / rel).unlink()
            del self.files[rel]
        if stem is not None and not extracted_now:
            shutil.rmtree(root / stem, ignore_errors=True)  # left by an earlier GroupLens layout
        self.origin, self.format, self.complete = origin, format, True
        self.save()

    def first_mismatch(self, root: Path) -> tuple[str, str, str] | None:
        """(file, recorded SHA-256, actual) of the first cached file that changed, else None."""
        for rel, entry in self.files.items():
            target = root / rel
            actual = _hash_file(target)[0] if target.is_file() else "<missing>"
            if actual != entry["sha256"]:
                return rel, entry["sha256"], actual
        return None


# --- transfers ------------------------------------------------------------------------------------


def _hash_file(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _checker(
    file: RemoteFile | None, trusted: str | None, source: str, note: str = ""
) -> Callable[[str, str], None]:
    """A check of (sha256, md5) against the pinned checksums, or the one recorded on first use."""

    def check(sha: str, md5: str) -> None:
        if file is not None and file.md5 and md5 != file.md5:
            raise ChecksumError(source, f"MD5 {file.md5} (published)", f"MD5 {md5}", note)
        if file is not None and file.sha256 and sha != file.sha256:
            raise ChecksumError(source, f"SHA-256 {file.sha256} (pinned)", f"SHA-256 {sha}", note)
        if trusted and sha != trusted:
            why = (
                "No checksum is published for this file and it differs from the first copy; if "
                "the change is expected, delete the manifest and fetch again with force (--force)."
            )
            expected = f"SHA-256 {trusted} (recorded on first use)"
            raise ChecksumError(source, expected, f"SHA-256 {sha}", f"{note} {why}".strip())

    return check


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not (enabled and console.is_terminal):  # a bar in a log file is noise
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield progress


def _transfer(
    url: str, target: Path, check: Callable[[str, str], None], progress: Progress | None
) -> tuple[str, int]:
    """Stream `url` to `target` atomically, verifying it with `check`. Returns (SHA-256, bytes)."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with atomic_file(target) as tmp:
        try:
            response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as e:
            raise DownloadError(url, f"download failed: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            hint = f"offline? pass a local copy (from_dir / --from) or a mirror (${MIRROR_ENV})"
            raise DownloadError(url, f"download failed: {reason} ({hint})") from None
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        task = progress.add_task(target.name, total=total) if progress is not None else None
        try:
            with response, open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                    if progress is not None and task is not None:
                        progress.advance(task, len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(url, f"download interrupted after {size} bytes: {e}") from None
        finally:
            if progress is not None:
                progress.refresh()  # the bar stays, showing the file's size and speed
        if total is not None and size != total:
            raise DownloadError(url, f"truncated download: got {size} of {total} bytes")
        check(sha.hexdigest(), md5.hexdigest())
    return sha.hexdigest(), size


def _warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {message}", soft_wrap=True, highlight=False)


def _install(
    manifest: _Manifest,
    root: Path,
    rel: str,
    url: str,
    file: RemoteFile | None,
    progress: Progress | None,
    dest: Path | None = None,
) -> None:
    """Fetch one file into `dest` (default root/rel), verify it and record it as `rel`."""
    trusted = manifest.trusted.get(rel) if file is not None and file.sha256 is None else None
    check = _checker(file, trusted, url, "The copy was discarded; the cache is unchanged.")
    sha, size = _transfer(url, dest or root / rel, check, progress)
    if file is not None and file.sha256 is None and trusted is None:
        manifest.trusted[rel] = sha
        _warn(
            f"no published checksum for {url}: trusting this first copy (SHA-256 {sha}), "
            f"recorded in {manifest.path}; later copies must match it"
        )
    checksum = "pinned" if file is not None and file.sha256 else "recorded"
    manifest.files[rel] = {"sha256": sha, "bytes": size, "source": url, "checksum": checksum}
    manifest.save()


# --- archives -------------------------------------------------------------------------------------


def _members(zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """(member, path below the archive's single top folder, if it has one), refusing unsafe names."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    paths = [PurePosixPath(i.filename) for i in infos]
    for p in paths:
        if p.is_absolute() or ".." in p.parts or "\\" in str(p):
            raise DataError(zf.filename, f"unsafe path in archive: {str(p)!r}")
    tops = {p.parts[0] for p in paths}
    if len(tops) == 1 and all(len(p.parts) > 1 for p in paths):
        paths = [PurePosixPath(*p.parts[1:]) for p in paths]
    return list(zip(infos, paths, strict=True))


def _extract(archive: Path, dest: Path, required: str, force: bool) -> None:
    """Extract `archive` into `dest` (in one rename) unless `dest` already matches it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _members(zf)
            if not any(p == PurePosixPath(required) for _, p in members):
                raise DataError(archive, f"the archive holds no {required}")
            if not force and all(
                (dest / p).is_file() and (dest / p).stat().st_size == i.file_size
                for i, p in members
            ):
                return
            with atomic_dir(dest, overwrite=True) as tmp:
                for info, rel in members:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(tmp / rel, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
    except zipfile.BadZipFile as e:
        raise DataError(archive, f"not a valid zip archive ({e})") from None


# --- fetch ----------------------------------------------------------------------------------------


def _mirror(base_url: str | None) -> str | None:
    base = base_url or os.environ.get(MIRROR_ENV) or None
    if base and "://" not in base:  # a plain directory
        base = Path(base).expanduser().resolve().as_uri()
    return base


def fetch(
    name: str,
    from_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    base_url: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Make dataset `name` available in the cache and return its directory (see `source_of`).

    Args:
        from_dir: copy a local copy instead of downloading (S3-Rec files, a GroupLens zip or its
            extracted files, or RecBole atomic files `<name>.inter/.item/.user`).
        cache_dir: the cache root (default: `cache_dir()`); the dataset goes to `<root>/<name>`.
        force: download (or copy) again even when the cache is complete and verified.
        base_url: a mirror replacing the source's base URL (default: $GUIM_DATASETS_MIRROR); a
            plain directory path works too.
    """
    spec = get_dataset(name)
    root = (Path(cache_dir) if cache_dir is not None else _default_cache_dir()) / spec.name
    created = not root.exists()
    try:
        with _progress(show_progress) as progress:
            if from_dir is not None:
                _copy_local(spec, Path(from_dir), root, force, progress)
            else:
                _download(spec, root, force, _mirror(base_url), progress)
    except BaseException:
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        raise
    if show_progress:
        console.print(f"  [green]✓[/] {spec.name}: {root}", soft_wrap=True, highlight=False)
    return root


def _download(
    spec: DatasetSpec, root: Path, force: bool, mirror: str | None, progress: Progress | None
) -> None:
    manifest = _Manifest.load(root, spec)
    if manifest.origin == "local" and manifest.complete and not force:
        bad = manifest.first_mismatch(root)
        if bad is None:
            return  # a verified local copy stands in for the download
        raise ChecksumError(
            str(root / bad[0]),
            f"SHA-256 {bad[1]} (recorded when copied)",
            f"SHA-256 {bad[2]}",
            "The cached copy changed: fetch again with from_dir (--from) or force (--force).",
        )
    # Until `finish`, files are only added (each one verified), so an earlier copy stays usable.
    for file in spec.files:
        target = root / file.name
        trusted = manifest.trusted.get(file.name)
        if target.is_file() and not force:
            sha, md5 = _hash_file(target)
            try:
                _checker(file, trusted, str(target))(sha, md5)
            except ChecksumError as e:
                _warn(f"{e} Downloading it again.")
            else:
                if file.sha256 is None and trusted is None:  # a cached file with no record
                    manifest.trusted[file.name] = sha
                    _warn(f"no published checksum for {target}: trusting the cached copy ({sha})")
                entry = {"sha256": sha, "bytes": target.stat().st_size, "source": str(target)}
                manifest.files.setdefault(
                    file.name, {**entry, "checksum": "pinned" if file.sha256 else "recorded"}
                )
                continue
        _install(manifest, root, file.name, file.url(mirror), file, progress)
    if spec.archive:
        _extract(root / spec.archive, root / Path(spec.archive).stem, spec.main_file, force)
    manifest.finish(root, spec, "download", spec.format, keep={f.name for f in spec.files})


@dataclass(frozen=True)
class _Layout:
    """What a local directory holds: the format, its kind ("files", "archive" or "extracted":
    GroupLens files outside their zip) and (cache path, source path, registry file) per file."""

    format: str
    kind: str
    entries: tuple[tuple[str, Path, RemoteFile | None], ...]


def _find_local(spec: DatasetSpec, src: Path) -> _Layout:
    base = src.parent if src.is_file() else src
    candidates = [base, base / spec.name] + ([base / "s3rec"] if spec.format == "s3rec" else [])
    by_name = {f.name: f for f in spec.files}
    for d in candidates:
        if spec.format == "s3rec" and (d / spec.main_file).is_file():
            present = [f for f in spec.files if (d / f.name).is_file()]
            if len(present) < len(spec.files):
                _warn(f"{d}: no {spec.files[1].name}; the items will have no attributes")
            return _Layout("s3rec", "files", tuple((f.name, d / f.name, f) for f in present))
        if spec.archive and (d / spec.archive).is_file():
            return _Layout(
                "grouplens", "archive", ((spec.archive, d / spec.archive, by_name[spec.archive]),)
            )
        if spec.archive and (d / spec.main_file).is_file():
            stem = Path(spec.archive).stem
            files = sorted(p for p in d.iterdir() if p.is_file())
            return _Layout(
                "grouplens", "extracted", tuple((f"{stem}/{p.name}", p, None) for p in files)
            )
        if spec.format == "grouplens" and (d / f"{spec.name}.inter").is_file():
            names = [f"{spec.name}.{ext}" for ext in ("inter", "item", "user")]
            return _Layout(
                "recbole", "files", tuple((n, d / n, None) for n in names if (d / n).is_file())
            )
    expected = [spec.main_file] + ([spec.archive, f"{spec.name}.inter"] if spec.archive else [])
    raise DataError(
        src, f"no local copy of {spec.name} found: expected one of {', '.join(expected)}"
    )


def _copy_local(
    spec: DatasetSpec, src: Path, root: Path, force: bool, progress: Progress | None
) -> None:
    if not src.exists():
        raise DataError(src, "no such file or directory")
    layout = _find_local(spec, src)
    manifest = _Manifest.load(root, spec)
    manifest.begin("local")
    if layout.kind == "extracted" and spec.archive:
        # copied into a fresh folder that replaces the old one (and whatever it held) at once
        with atomic_dir(root / Path(spec.archive).stem, overwrite=True) as tmp:
            for rel, path, file in layout.entries:
                dest = tmp / PurePosixPath(rel).name
                _install(manifest, root, rel, path.resolve().as_uri(), file, progress, dest)
    else:
        for rel, path, file in layout.entries:
            _install(manifest, root, rel, path.resolve().as_uri(), file, progress)
    if layout.kind == "archive" and spec.archive:
        _extract(root / spec.archive, root / Path(spec.archive).stem, spec.main_file, force)
    manifest.finish(root, spec, "local", layout.format, keep={rel for rel, _, _ in layout.entries})


def source_of(name: str, path: str | Path) -> tuple[str, Path]:
    """(loader format, path to hand to the loader) for dataset `name` stored in `path`.

    ("s3rec", <dir>/<File>.txt), ("grouplens", the directory holding u.data / ratings.dat) or
    ("recbole", the directory holding <name>.inter).
    """
    spec = get_dataset(name)
    path = Path(path)
    if path.is_file():
        if spec.format == "s3rec" and path.suffix == ".txt":
            return "s3rec", path
        path = path.parent
    recorded = _Manifest.load(path, spec).format if (path / MANIFEST).is_file() else None
    for d in (path, path / spec.name):
        if spec.format == "s3rec" and (d / spec.main_file).is_file():
            return "s3rec", d / spec.main_file
        if spec.archive and recorded != "recbole":
            stem = Path(spec.archive).stem
            for g in (d, d / stem):
                if (g / spec.main_file).is_file():
                    return "grouplens", g
        if spec.archive and (d / f"{spec.name}.inter").is_file():
            return "recbole", d
    raise DataError(path, f"no {spec.name} files found (fetch it first: guim download {spec.name})")
