"""Download, verify and unpack a dataset for a user who has none: ``python -m dualpath.data fetch flickr8k``.

    folder = fetch("flickr8k")     # $DUALPATH_DATA/flickr8k, else ~/.cache/dualpath/data/flickr8k
    corpus = load_flickr8k(folder)  # or load_corpus("flickr8k"): that folder is a data root candidate

Every step can be interrupted and rerun:

1. each archive is downloaded to ``<to>/downloads/<file>.part``, resumed with an HTTP Range request
   on the next run, and renamed to ``<file>`` once whole. An archive already in ``<to>/downloads/``
   is used as is, so an offline user can put it there by hand;
2. the archives are extracted into a hidden temporary folder under ``<to>``, the text files and
   the image folder are gathered from wherever the archives put them, and checked there (zip
   CRCs, pinned archive hashes, text file hashes, image count, every split image decodes);
3. the checked folder, with a ``FETCHED.json`` marker, is renamed to ``<to>/<folder>`` in one step,
   so a download, extraction or check that fails never leaves a layout the loader accepts.

A later call finds the marker and only re-checks the text hashes and the image count (no network,
no decoding). A ``<to>/<folder>`` without a marker (unzipped by hand) is fully checked in place.

Sources are configuration: ``sources.json`` beside this module, or a file of the same schema named
by ``sources=`` or ``$DUALPATH_SOURCES``. It maps each dataset name to an object with the keys::

    folder          the folder made under <to>, e.g. "flickr8k"
    shared_folder   optional: a folder under <to> that already holds the dataset in another layout
                    (the shared data's "flickr8k_224"); when it exists it is returned as is
    archives        [{"url": ..., "sha256": hex digest or null}]; the file name is the URL's last part
    text_sha256     {file name: sha256} of the text files the loader reads, put at <folder>/<file name>
    image_folder    the image folder's name, put at <folder>/<image_folder>
    image_count     how many files the image folder must hold
    decode_check    text files (keys of text_sha256) listing one image name a line; each must decode
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from ..errors import DataError
from ..paths import default_fetch_root
from ..progress import progress as progress_bar
from ..progress import progress_enabled
from .corpus import get_key, read_json
from .flickr8k import numbered_lines
from .images import load_image

SOURCES_ENV = "DUALPATH_SOURCES"
PACKAGED_SOURCES = Path(__file__).with_name("sources.json")
MARKER = "FETCHED.json"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60  # a stalled server fails within a minute instead of hanging a notebook cell

Log = Callable[[str], None]
Advice = Callable[[str], str]  # item at fault (text file or image folder) -> what the user should do


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str | None

    @property
    def file_name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class DatasetSource:
    """One entry of a sources file (schema in the module docstring)."""

    name: str
    folder: str
    shared_folder: str | None
    archives: tuple[Archive, ...]
    text_sha256: dict[str, str]
    image_folder: str
    image_count: int
    decode_check: tuple[str, ...]


def fetch(name: str = "flickr8k", to: str | os.PathLike | None = None, *,
          sources: str | os.PathLike | None = None, progress: bool = True, log: Log = print) -> Path:
    """Make ``<to>/<folder>`` hold a verified copy of dataset ``name`` and return that folder.

    ``to`` defaults to :func:`dualpath.paths.default_fetch_root`; ``sources`` to ``$DUALPATH_SOURCES``,
    else the packaged ``sources.json``. A failed download or check raises DataError saying what is
    missing and where to put it by hand.
    """
    source = load_source(name, sources)
    root = Path(to).expanduser() if to is not None else default_fetch_root()
    if source.shared_folder and (root / source.shared_folder).is_dir():
        log(f"{root / source.shared_folder} already holds {name} (the shared layout); using it as is")
        return root / source.shared_folder
    target = root / source.folder
    if (target / MARKER).is_file():
        _verify(target, source, lambda _: f"remove {target} and run again to fetch it anew", decode=False)
        log(f"{target} already holds a verified copy of {name}")
        return target
    if target.exists():
        log(f"{target} exists without {MARKER} (unzipped by hand?); checking it in place")
        _verify(target, source, lambda _: f"fix or remove {target} and run again", progress=progress)
        _write_marker(target, source)
        return target
    downloads = root / "downloads"
    # called when a download fails, so that it names only the archives still missing then
    manual = partial(_manual_hint, source, downloads, target)
    archives = {archive.file_name: _ensure_archive(archive, downloads, manual, progress, log)
                for archive in source.archives}
    _install(archives, source, target, progress, log)
    log(f"{name} is ready in {target} (the archives in {downloads} are no longer needed)")
    return target


# ---------------------------------------------------------------------- sources
def load_source(name: str, sources: str | os.PathLike | None = None) -> DatasetSource:
    """The entry ``name`` of the sources file (``sources``, ``$DUALPATH_SOURCES``, or the packaged one)."""
    path = Path(sources or os.environ.get(SOURCES_ENV) or PACKAGED_SOURCES)
    entries = read_json(path, "dataset sources file")
    if not isinstance(entries, dict):
        raise DataError(f"{path}: expected a JSON object mapping dataset names to their sources")
    if name not in entries:
        raise DataError(f"{path} has no dataset {name!r}; it has {', '.join(sorted(entries)) or 'none'}")
    return _parse_source(name, entries[name], path)


def _parse_source(name: str, entry: object, path: Path) -> DatasetSource:
    where = f"dataset {name!r}"
    archives = tuple(Archive(get_key(a, "url", path, f"{where}, archive {i}", str),
                             get_key(a, "sha256", path, f"{where}, archive {i}", (str, type(None))))
                     for i, a in enumerate(get_key(entry, "archives", path, where, list)))
    nameless = [a.url for a in archives if not a.file_name]
    if nameless:
        raise DataError(f"{path}: {where}: archive URL {nameless[0]!r} does not end in a file name")
    text_sha256 = get_key(entry, "text_sha256", path, where, dict)
    decode_check = tuple(get_key(entry, "decode_check", path, where, list))
    unknown = [f for f in decode_check if f not in text_sha256]
    if unknown:
        raise DataError(f"{path}: {where}: decode_check names {unknown[0]!r}, which is not a key of text_sha256")
    shared_folder = get_key(entry, "shared_folder", path, where, str) if "shared_folder" in entry else None
    return DatasetSource(name=name, folder=get_key(entry, "folder", path, where, str),
                         shared_folder=shared_folder, archives=archives, text_sha256=dict(text_sha256),
                         image_folder=get_key(entry, "image_folder", path, where, str),
                         image_count=get_key(entry, "image_count", path, where, int),
                         decode_check=decode_check)


# ---------------------------------------------------------------------- downloads
def _manual_hint(source: DatasetSource, downloads: Path, target: Path) -> str:
    """How to install by hand what is not downloaded yet."""
    missing = " and ".join(f"{a.url} to {downloads / a.file_name}" for a in source.archives
                           if not (downloads / a.file_name).is_file())
    return (f"to install it by hand, download {missing} and run again, or unzip the archives yourself "
            f"into {target}/ so that it holds {', '.join(source.text_sha256)} and {source.image_folder}/, "
            "then run again")


def _ensure_archive(archive: Archive, downloads: Path, manual: Callable[[], str], progress: bool,
                    log: Log) -> Path:
    """The archive in ``downloads``: the one already there, else downloaded; checked against its pin."""
    path = downloads / archive.file_name
    if path.is_file():
        log(f"using {path}")
    else:
        downloads.mkdir(parents=True, exist_ok=True)
        _download(archive.url, path, manual, progress, log)
    if archive.sha256 is not None:
        actual = sha256_of(path)
        if actual != archive.sha256.lower():
            path.unlink()
            raise DataError(f"{path} has sha256 {actual}, but the sources pin {archive.sha256}; the file was "
                            f"removed: run again to download {archive.url} anew")
    return path


def _download(url: str, path: Path, manual: Callable[[], str], progress: bool, log: Log) -> None:
    """Download ``url`` to ``path`` through ``<path>.part``, resuming what an earlier run left there."""
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    log(f"{'resuming' if have else 'downloading'} {url} -> {path}")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part is not a prefix the server can continue: start over
            part.unlink()
            return _download(url, path, manual, progress, log)
        raise DataError(f"downloading {url} failed: HTTP {e.code} {e.reason}; {manual()}") from e
    except OSError as e:  # URLError (refused, no DNS) and timeouts are OSErrors
        raise DataError(f"cannot download {url} ({getattr(e, 'reason', e)}); {manual()}") from e
    with response:
        # 206: the server continues the .part; 200: it ignored the Range header and sends it all
        start = have if response.status == 206 else 0
        length = response.headers.get("Content-Length")
        expected = start + int(length) if length is not None else None
        _write_body(response, part, start, expected, url, progress)
    size = part.stat().st_size
    if expected is not None and size != expected:
        raise DataError(f"downloading {url} stopped at {size:,} of {expected:,} bytes; the partial file "
                        f"is kept at {part}: run again to resume")
    part.replace(path)


def _write_body(response, part: Path, start: int, expected: int | None, url: str, progress: bool) -> None:
    bar = tqdm(total=expected, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name,
               disable=not progress_enabled(progress), leave=False, dynamic_ncols=True)
    try:
        with open(part, "ab" if start else "wb") as out, bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    except (OSError, HTTPException) as e:
        raise DataError(f"downloading {url} stopped after {part.stat().st_size:,} bytes ({e}); the partial "
                        f"file is kept at {part}: run again to resume") from e


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------- extraction
def _install(archives: dict[str, Path], source: DatasetSource, target: Path, progress: bool, log: Log) -> None:
    """Extract, gather and check in a temporary folder beside ``target``, then rename it to ``target``."""
    prefix = f".{source.folder}-incomplete-"
    for stale in target.parent.glob(f"{prefix}*"):  # left by a run that was killed before its cleanup
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        unpacked, layout = staging / "unpacked", staging / source.folder
        for file_name, path in archives.items():
            _extract(path, unpacked / file_name, progress, log)
        origin = _gather(unpacked, layout, source, archives)
        log(f"checking {source.name}")
        _verify(layout, source, lambda item: f"it came from {origin[item]}: delete that file and run again "
                                             "to download it anew", progress=progress)
        _write_marker(layout, source)
        layout.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, dest: Path, progress: bool, log: Log) -> None:
    """Extract ``archive`` into ``dest``; a corrupt archive is removed so that a rerun downloads it again."""
    log(f"extracting {archive}")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if _wanted(m.filename)]
            for member in progress_bar(members, desc=f"extracting {archive.name}", enable=progress):
                zf.extract(member, dest)  # checks the member's CRC; strips absolute and '..' parts
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        archive.unlink(missing_ok=True)
        raise DataError(f"{archive} is not a valid zip archive ({e}); it was removed: run again to download "
                        "it anew") from e


def _wanted(member: str) -> bool:
    """False for macOS resource forks and hidden files, which some archives carry."""
    return not any(part == "__MACOSX" or part.startswith(".") for part in PurePosixPath(member).parts)


def _gather(unpacked: Path, layout: Path, source: DatasetSource, archives: dict[str, Path]) -> dict[str, Path]:
    """Move the text files and the image folder into ``layout``; return the archive each came from."""
    layout.mkdir()
    origin = {}
    for item, is_dir in [(f, False) for f in source.text_sha256] + [(source.image_folder, True)]:
        found = _locate(unpacked, item, is_dir, archives)
        origin[item] = archives[found.relative_to(unpacked).parts[0]]
        found.rename(layout / item)
    return origin


def _locate(unpacked: Path, item: str, is_dir: bool, archives: dict[str, Path]) -> Path:
    """The shallowest file (or folder) named ``item`` in the extracted archives."""
    matches = [p for p in unpacked.rglob(item) if p.is_dir() == is_dir]
    if not matches:
        files = ", ".join(str(p) for p in archives.values())
        raise DataError(f"none of the archives ({files}) holds {item}{'/' if is_dir else ''}: they are not "
                        "the release the sources name; delete them and run again, or check the sources' URLs")
    return min(matches, key=lambda p: (len(p.parts), str(p)))


# ---------------------------------------------------------------------- checks
def _verify(folder: Path, source: DatasetSource, advice: Advice, *, decode: bool = True,
            progress: bool = True) -> None:
    """Check the text hashes, the image count and (with ``decode``) that every split image decodes."""
    for file_name, expected in source.text_sha256.items():
        path = folder / file_name
        if not path.is_file():
            raise DataError(f"{path} is missing; {advice(file_name)}")
        actual = sha256_of(path)
        if actual != expected.lower():
            raise DataError(f"{path} has sha256 {actual}, but the sources pin {expected}; {advice(file_name)}")
    image_dir = folder / source.image_folder
    count = _count_files(image_dir)
    if count != source.image_count:
        raise DataError(f"{image_dir} holds {count} files, expected {source.image_count}; "
                        f"{advice(source.image_folder)}")
    if decode:
        _decode_listed(folder, source, advice, progress)


def _count_files(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.is_file() and not e.name.startswith("."))


def _decode_listed(folder: Path, source: DatasetSource, advice: Advice, progress: bool) -> None:
    names = [line.strip() for file_name in source.decode_check for _, line in numbered_lines(folder / file_name)]
    for name in progress_bar(names, desc="decoding images", enable=progress):
        try:
            load_image(folder / source.image_folder / name)
        except DataError as e:
            raise DataError(f"{e}; {advice(source.image_folder)}") from e


def _write_marker(folder: Path, source: DatasetSource) -> None:
    record = {"dataset": source.name, "archives": [a.url for a in source.archives],
              "text_sha256": source.text_sha256, "image_count": source.image_count}
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
