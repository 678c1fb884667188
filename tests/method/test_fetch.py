"""Fetching Flickr8k: small archives served on a loopback HTTP server, plus the packaged sources' pins."""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import shared_data
from loopback import ArchiveServer, zip_bytes
from PIL import Image

import dualpath.paths
from dualpath.data import load_corpus, load_flickr8k
from dualpath.data.__main__ import main
from dualpath.data.fetch import MARKER, PACKAGED_SOURCES, fetch, load_source
from dualpath.errors import DataError

SPLITS = {"Flickr_8k.trainImages.txt": ["a0.jpg", "a1.jpg", "a2.jpg"],
          "Flickr_8k.devImages.txt": ["a3.jpg"],
          "Flickr_8k.testImages.txt": ["a4.jpg", "a5.jpg"]}
IMAGES = [f"a{i}.jpg" for i in range(6)]
IMAGE_ZIP, TEXT_ZIP = "Flickr8k_Dataset.zip", "Flickr8k_text.zip"


# ---------------------------------------------------------------------- a tiny Flickr8k release
def jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), color=(40 * i, 100, 200)).save(buf, "JPEG")
    return buf.getvalue()


def text_files() -> dict[str, bytes]:
    tokens = "".join(f"{name}#{k}\tA picture number {i} , caption {k} .\n"
                     for i, name in enumerate(IMAGES) for k in range(2))
    files = {"Flickr8k.token.txt": tokens + "ghost.jpg.1#0\tA caption whose image is absent .\n"}
    files.update({name: "".join(f"{x}\n" for x in images) for name, images in SPLITS.items()})
    return {name: text.encode() for name, text in files.items()}


def image_archive(images: dict[str, bytes]) -> bytes:
    members = {f"Flicker8k_Dataset/{name}": data for name, data in images.items()}
    # what macOS zips carry: fetch must skip them (and not count them as images)
    members.update({"__MACOSX/Flicker8k_Dataset/._a0.jpg": b"resource fork", "Flicker8k_Dataset/.DS_Store": b"x"})
    return zip_bytes(members)


def text_archive(texts: dict[str, bytes]) -> bytes:
    # in a subfolder, with an extra file: fetch must find the files wherever the archive puts them
    return zip_bytes({f"Flickr8k_text/{name}": data for name, data in texts.items()}
                     | {"Flickr8k_text/readme.txt": b"terms of use"})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Release:
    server: ArchiveServer
    sources: Path
    images: dict[str, bytes]
    texts: dict[str, bytes]
    root: Path                      # the `to` folder the tests fetch into

    def fetch(self, **kwargs) -> Path:
        return fetch("flickr8k", self.root, sources=self.sources, log=lambda _: None, **kwargs)

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def leftovers(self) -> list[str]:
        """What a failed fetch left under the root besides its downloads (must be nothing)."""
        return sorted(p.name for p in self.root.iterdir() if p.name != "downloads") if self.root.exists() else []


def write_sources(path: Path, server: ArchiveServer, texts: dict[str, bytes], **changes) -> Path:
    entry = {"folder": "flickr8k", "shared_folder": "flickr8k_224",
             "archives": [{"url": server.url(IMAGE_ZIP), "sha256": None},
                          {"url": server.url(TEXT_ZIP), "sha256": None}],
             "text_sha256": {name: sha256(data) for name, data in texts.items()},
             "image_folder": "Flicker8k_Dataset", "image_count": len(IMAGES),
             "decode_check": list(SPLITS)} | changes
    path.write_text(json.dumps({"flickr8k": entry}))
    return path


@pytest.fixture
def release(tmp_path):
    images = {name: jpeg(i) for i, name in enumerate(IMAGES)}
    texts = text_files()
    server = ArchiveServer({IMAGE_ZIP: image_archive(images), TEXT_ZIP: text_archive(texts)})
    yield Release(server, write_sources(tmp_path / "sources.json", server, texts), images, texts, tmp_path / "data")
    server.stop()


# ---------------------------------------------------------------------- success, no-op, CLI
def test_fetch_installs_a_layout_the_loader_reads_with_mini_splits(release):
    (release.root / ".flickr8k-incomplete-killed").mkdir(parents=True)  # an earlier run was killed
    folder = release.fetch()
    assert folder == release.root / "flickr8k"
    corpus = load_flickr8k(folder)
    assert (corpus.n_images, corpus.n_captions) == (6, 12)
    assert {k: len(v) for k, v in corpus.splits.items()} == {
        "train": 3, "val": 1, "test": 2, "mini_train": 3, "mini_val": 1, "mini_test": 2}
    assert sorted(p.name for p in (folder / "Flicker8k_Dataset").iterdir()) == IMAGES
    assert json.loads((folder / MARKER).read_text())["text_sha256"]["Flickr8k.token.txt"] == \
        sha256(release.texts["Flickr8k.token.txt"])
    assert sorted(p.name for p in release.downloads.iterdir()) == [IMAGE_ZIP, TEXT_ZIP]
    assert release.leftovers() == ["flickr8k"]


def test_second_fetch_is_a_noop_without_network(release):
    release.fetch()
    served = len(release.server.requests)
    assert release.fetch() == release.root / "flickr8k"
    assert len(release.server.requests) == served == 2


def test_noop_recheck_notices_a_changed_text_file(release):
    folder = release.fetch()
    with open(folder / "Flickr_8k.testImages.txt", "a") as f:
        f.write("a0.jpg\n")
    with pytest.raises(DataError, match=r"Flickr_8k\.testImages\.txt has sha256 .*remove .*flickr8k and run again"):
        release.fetch()


def test_cli_prints_the_folder_and_reports_errors_without_traceback(release, capsys):
    args = ["fetch", "flickr8k", "--to", str(release.root), "--sources", str(release.sources), "--no-progress"]
    assert main(args) == 0
    assert capsys.readouterr().out == f"{release.root / 'flickr8k'}\n"
    assert main(["fetch", "flickr9k", "--sources", str(release.sources)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "has no dataset 'flickr9k'; it has flickr8k" in captured.err
    assert "Traceback" not in captured.err


def test_shared_layout_is_used_as_is(release):
    (release.root / "flickr8k_224").mkdir(parents=True)
    assert release.fetch() == release.root / "flickr8k_224"
    assert release.server.requests == []


def test_a_copy_unzipped_by_hand_is_checked_in_place_and_marked(release):
    folder = release.root / "flickr8k"
    (folder / "Flicker8k_Dataset").mkdir(parents=True)
    for name, data in release.texts.items():
        (folder / name).write_bytes(data)
    for name, data in release.images.items():
        (folder / "Flicker8k_Dataset" / name).write_bytes(data)
    assert release.fetch() == folder
    assert (folder / MARKER).is_file() and release.server.requests == []


# ---------------------------------------------------------------------- downloads
def test_a_cut_connection_is_resumed_with_a_range_request(release):
    archive = release.server.files[IMAGE_ZIP]
    release.server.cut_after = len(archive) // 2
    # a short read or a reset connection: either way the part is kept for the rerun
    with pytest.raises(DataError, match=r"stopped (at|after) .* bytes.*partial file is kept at .*\.part: run again"):
        release.fetch()
    assert (release.downloads / f"{IMAGE_ZIP}.part").stat().st_size == len(archive) // 2
    assert release.leftovers() == []
    folder = release.fetch()
    assert release.server.requests[:2] == [(f"/{IMAGE_ZIP}", None), (f"/{IMAGE_ZIP}", f"bytes={len(archive) // 2}-")]
    assert (release.downloads / IMAGE_ZIP).read_bytes() == archive
    assert not (release.downloads / f"{IMAGE_ZIP}.part").exists()
    assert load_flickr8k(folder).n_images == 6


def test_a_server_ignoring_the_range_restarts_the_download(release):
    release.server.cut_after, release.server.ignore_range = 100, True
    with pytest.raises(DataError, match="run again to resume"):
        release.fetch()
    release.fetch()
    assert release.server.requests[1] == (f"/{IMAGE_ZIP}", "bytes=100-")
    assert (release.downloads / IMAGE_ZIP).read_bytes() == release.server.files[IMAGE_ZIP]


def test_server_down_names_the_url_and_where_to_put_the_file_by_hand(release):
    release.server.stop()
    with pytest.raises(DataError) as caught:
        release.fetch()
    message = str(caught.value)
    assert release.server.url(IMAGE_ZIP) in message
    assert f"download {release.server.url(IMAGE_ZIP)} to {release.downloads / IMAGE_ZIP} and " \
           f"{release.server.url(TEXT_ZIP)} to {release.downloads / TEXT_ZIP} and run again" in message
    assert f"unzip the archives yourself into {release.root / 'flickr8k'}/" in message
    assert release.leftovers() == []
    # the manual path: archives put in downloads/ by hand are used without a server
    for name in (IMAGE_ZIP, TEXT_ZIP):
        (release.downloads / name).write_bytes(release.server.files[name])
    assert load_flickr8k(release.fetch()).n_images == 6


# ---------------------------------------------------------------------- failed checks leave no layout
def truncated(archive: bytes, images: dict[str, bytes]) -> bytes:
    return archive[:len(archive) // 2]


def bad_crc(archive: bytes, images: dict[str, bytes]) -> bytes:
    at = archive.index(images["a2.jpg"]) + 50
    return archive[:at] + bytes([archive[at] ^ 0xFF]) + archive[at + 1:]


@pytest.mark.parametrize("corrupt", [truncated, bad_crc])
def test_a_corrupt_archive_is_removed_and_leaves_no_layout(release, corrupt):
    release.server.files[IMAGE_ZIP] = corrupt(release.server.files[IMAGE_ZIP], release.images)
    with pytest.raises(DataError, match=rf"{IMAGE_ZIP} is not a valid zip archive .*removed: run again"):
        release.fetch()
    assert not (release.downloads / IMAGE_ZIP).exists()
    assert release.leftovers() == []


def test_a_wrong_text_hash_names_the_file_and_its_archive(release):
    texts = release.texts | {"Flickr_8k.devImages.txt": b"a different list\n"}
    write_sources(release.sources, release.server, texts)
    with pytest.raises(DataError, match=rf"Flickr_8k\.devImages\.txt has sha256 .*came from .*{TEXT_ZIP}"):
        release.fetch()
    assert release.leftovers() == []


def test_a_split_image_that_does_not_decode_fails_the_fetch(release):
    release.server.files[IMAGE_ZIP] = image_archive(release.images | {"a3.jpg": b"not a jpeg"})
    with pytest.raises(DataError, match=rf"cannot decode image .*a3\.jpg.*came from .*{IMAGE_ZIP}"):
        release.fetch()
    assert release.leftovers() == []


def test_a_wrong_image_count_fails_the_fetch(release):
    write_sources(release.sources, release.server, release.texts, image_count=7)
    with pytest.raises(DataError, match=r"Flicker8k_Dataset holds 6 files, expected 7"):
        release.fetch()
    assert release.leftovers() == []


# ---------------------------------------------------------------------- defaults and the data root
def test_default_root_is_found_by_load_corpus(release, tmp_path, monkeypatch):
    monkeypatch.delenv("DUALPATH_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DUALPATH_SOURCES", str(release.sources))
    # a checkout with neither data/ nor ../shared/data, like a fresh clone on Colab
    monkeypatch.setattr(dualpath.paths, "_CHECKOUT", tmp_path / "clone" / "repo")
    folder = fetch(log=lambda _: None)
    assert folder == tmp_path / "home" / ".cache" / "dualpath" / "data" / "flickr8k"
    assert dualpath.paths.candidate_data_roots()[-1] == folder.parent
    assert load_corpus("flickr8k").image_root == folder / "Flicker8k_Dataset"
    monkeypatch.setenv("DUALPATH_DATA", str(tmp_path / "elsewhere"))
    assert dualpath.paths.default_fetch_root() == tmp_path / "elsewhere"


# ---------------------------------------------------------------------- the loader's derived mini splits
def test_original_layout_derives_mini_splits_as_prefixes(tmp_path):
    (tmp_path / "images").mkdir()
    names = [f"i{k:03d}.jpg" for k in range(260)]
    for name in names:
        (tmp_path / "images" / name).touch()
    (tmp_path / "Flickr8k.token.txt").write_text("".join(f"{n}#0\tA caption .\n" for n in names))
    lists = {"Flickr_8k.trainImages.txt": names[:250], "Flickr_8k.devImages.txt": names[250:253],
             "Flickr_8k.testImages.txt": names[253:]}
    for fname, listed in lists.items():
        (tmp_path / fname).write_text("".join(f"{n}\n" for n in listed))
    corpus = load_flickr8k(tmp_path)
    split_names = {k: [corpus.images[i] for i in v] for k, v in corpus.splits.items()}
    assert split_names["mini_train"] == names[:200]
    assert split_names["mini_val"] == names[250:253] and split_names["mini_test"] == names[253:]


# ---------------------------------------------------------------------- the shared data
@pytest.fixture(scope="module")
def shared_flickr8k() -> Path:
    return shared_data.shared_flickr8k()


def test_packaged_text_hashes_are_those_of_the_official_files(shared_flickr8k):
    source = load_source("flickr8k", PACKAGED_SOURCES)
    official = shared_flickr8k / "original_text"
    assert source.text_sha256 == {name: sha256((official / name).read_bytes()) for name in source.text_sha256}
    assert (source.folder, source.image_folder, source.image_count) == ("flickr8k", "Flicker8k_Dataset", 8091)
    assert [a.file_name for a in source.archives] == [IMAGE_ZIP, TEXT_ZIP]


def test_derived_mini_splits_equal_the_shared_mini_lists(shared_flickr8k):
    corpus = load_flickr8k(shared_flickr8k / "original_text", images=shared_flickr8k / "images")
    for split in ("mini_train", "mini_val", "mini_test"):
        listed = (shared_flickr8k / "splits" / f"{split}.txt").read_text().split()
        assert [corpus.images[i] for i in corpus.splits[split]] == listed
