"""Colab, played on this machine: a fresh Python where torch and the rest are already installed but
this package is not, no data anywhere, the network limited to a loopback mirror of the Flickr8k
archives. The notebooks' own install cell installs the package from a wheel; notebooks 01-05 run in
smoke mode through papermill; the data arrives through notebook 01's ``download=True``.

The "preinstalled" packages are this test environment's own, seen through a ``.pth`` file that
points at a folder of links to them (every package except this one), as a Colab image has them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from loopback import ArchiveServer, zip_bytes
from shared_data import shared_flickr8k

from dualpath.data.flickr8k import MINI_SPLITS, ORIGINAL_SPLITS, TOKEN_FILE
from dualpath_book.layout import NOTEBOOKS_DIR, REPO_ROOT
from dualpath_book.sync import book_notebooks

pytestmark = pytest.mark.slow
WHEEL_INPUTS = ("lib", "pyproject.toml", "setup.py", "README.md", "book/tables", "grids")
DEAD_PROXY = "http://127.0.0.1:9"   # anything not on the loopback goes here and fails


def _mirror_archives(shared: Path) -> tuple[dict[str, bytes], dict]:
    """Flickr8k-shaped archives of the images the mini splits use (official text files, cut to
    them), and the sources entry that pins them."""
    lists = {split: (shared / "original_text" / name).read_text().split() for split, name in ORIGINAL_SPLITS.items()}
    keep = {split: lists[split][:n] for split, n in MINI_SPLITS.values()}   # the smoke runs' images
    names = [n for split in ("train", "val", "test") for n in keep[split]]
    wanted = set(names)
    tokens = "".join(line + "\n" for line in (shared / "original_text" / TOKEN_FILE).read_text().splitlines()
                     if line.split("#", 1)[0] in wanted)
    texts = {TOKEN_FILE: tokens.encode()}
    texts.update({ORIGINAL_SPLITS[s]: "".join(f"{n}\n" for n in keep[s]).encode() for s in keep})
    images = {f"Flicker8k_Dataset/{n}": (shared / "images" / n).read_bytes() for n in names}
    files = {"Flickr8k_Dataset.zip": zip_bytes(images), "Flickr8k_text.zip": zip_bytes(texts)}
    entry = {"folder": "flickr8k", "image_folder": "Flicker8k_Dataset", "image_count": len(names),
             "text_sha256": {k: hashlib.sha256(v).hexdigest() for k, v in texts.items()},
             "decode_check": [ORIGINAL_SPLITS[s] for s in ("train", "val", "test")]}
    return files, entry


def _preinstalled(tmp: Path) -> Path:
    """A folder of links to every installed package of this environment except dualpath."""
    site = Path(sysconfig.get_paths()["purelib"])
    farm = tmp / "preinstalled"
    farm.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("dualpath", "__editable__", "_dualpath")) or name.endswith(".pth"):
            continue
        (farm / entry.name).symlink_to(entry)
    return farm


def _colab_python(tmp: Path) -> Path:
    venv = tmp / "colab"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "colab_image.pth").write_text(str(_preinstalled(tmp)) + "\n")
    return python


def _wheel(tmp: Path) -> Path:
    src = tmp / "src"
    for item in WHEEL_INPUTS:
        path = REPO_ROOT / item
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, src / item)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "wheels"), str(src)], check=True, env={**os.environ, "PIP_NO_INDEX": "1"})
    (wheel,) = (tmp / "wheels").glob("dualpath-*.whl")
    return wheel


def _with_package(path: Path, wheel: Path, out: Path) -> Path:
    """The notebook as a user would run it: its install cell's PACKAGE set to the wheel."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "install" in c.metadata.get("tags", []))
    first, rest = cell.source.split("\n", 1)
    assert first.startswith("PACKAGE = "), "the install cell's first line sets PACKAGE"
    cell.source = f"PACKAGE = {str(wheel)!r}\n{rest}"
    nbformat.write(nb, str(out))
    return out


def _outputs(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_the_notebooks_run_on_a_fresh_colab_like_machine(tmp_path: Path):
    files, entry = _mirror_archives(shared_flickr8k())
    server = ArchiveServer(files)
    try:
        entry["archives"] = [{"url": server.url(name), "sha256": None} for name in files]
        sources = tmp_path / "sources.json"
        sources.write_text(json.dumps({"flickr8k": entry}))
        python, wheel = _colab_python(tmp_path), _wheel(tmp_path)
        venv = python.parent.parent
        subprocess.run([str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "colab"],
                       check=True, capture_output=True)
        home, work = tmp_path / "home", tmp_path / "content"
        home.mkdir()
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DUALPATH_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(HOME=str(home), JUPYTER_PATH=str(venv / "share" / "jupyter"), DUALPATH_SOURCES=str(sources),
                   DUALPATH_PROGRESS="0", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY,
                   HTTPS_PROXY=DEAD_PROXY, no_proxy="127.0.0.1", NO_PROXY="127.0.0.1")
        executed = {}
        for path in [p for p in book_notebooks(NOTEBOOKS_DIR) if p.name[:2] in ("01", "02", "03", "04", "05")]:
            params = ["-p", "smoke", "True"] + (["-p", "download", "True"] if path.name.startswith("01") else [])
            out = work / path.name
            proc = subprocess.run([str(python), "-m", "papermill", str(_with_package(path, wheel, work / f"in_{path.name}")),
                                   str(out), "-k", "colab", "--cwd", str(work), *params],
                                  env=env, capture_output=True, text=True, timeout=1500)
            assert proc.returncode == 0, f"{path.name} failed:\n{proc.stderr[-3000:]}"
            executed[path.name[:2]] = nbformat.read(out, as_version=4)
    finally:
        server.stop()
    # the first notebook installed the package from the wheel, keeping the machine's torch
    first = _outputs(executed["01"])
    assert f"installed dualpath[book] from {wheel}; kept torch==" in first, first[:2000]
    assert all("dualpath is installed: nothing to do" in _outputs(nb) for k, nb in executed.items() if k != "01")
    site = Path(subprocess.run([str(python), "-c", "import dualpath, pathlib; print(pathlib.Path(dualpath.__file__).parent.parent)"],
                               check=True, capture_output=True, text=True, env=env).stdout.strip())
    assert site.is_relative_to(venv), f"dualpath imported from {site}, not the fresh environment"
    assert not any(site.glob("torch*")), "pip installed a torch of its own"
    # the data came through the fetch path, from the mirror, into the default folder
    assert [path for path, _ in server.requests] == ["/Flickr8k_Dataset.zip", "/Flickr8k_text.zip"]
    assert (home / ".cache" / "dualpath" / "data" / "flickr8k" / "FETCHED.json").is_file()
    # the runs live beside the notebooks, as on Colab's /content
    assert (work / "runs" / "book" / "smoke-efficientnet_lite0-seed0" / "metrics.json").is_file()
