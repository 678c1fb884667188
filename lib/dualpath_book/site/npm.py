"""A package tarball from the npm registry, fetched once and checked against its published hash.

The book's site serves a few JavaScript packages from ``_static`` (MathJax, onnxruntime-web), so a
page never loads code from another host. Each comes from the registry with ``npm pack`` into a
cache outside the clone (``~/.cache/dualpath/<name>-<version>/``), and is used only when its sha512
equals the ``dist.integrity`` the registry published for that version (``npm view NAME@VERSION
dist.integrity``), written into the module that vendors it.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def cache_dir(name: str, version: str) -> Path:
    root = Path(os.environ.get("DUALPATH_VENV_ROOT", Path.home() / ".cache" / "dualpath"))
    return root / f"{name}-{version}"


def integrity(path: Path) -> str:
    """npm's ``dist.integrity`` of a file: ``sha512-`` and the base64 of its SHA-512."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _cached(name: str, version: str) -> Path:
    return cache_dir(name, version) / f"{name}-{version}.tgz"


def tarball_cached(name: str, version: str, expected: str) -> bool:
    tgz = _cached(name, version)
    return tgz.is_file() and integrity(tgz) == expected


def tarball(name: str, version: str, expected: str) -> Path:
    """The cached ``NAME-VERSION.tgz``, fetched with ``npm pack`` the first time."""
    tgz = _cached(name, version)
    if tarball_cached(name, version, expected):
        return tgz
    npm = shutil.which("npm")
    if not npm:
        raise RuntimeError(
            f"{name} {version} is not cached ({tgz}) and npm is not installed to fetch it. Install "
            f"Node.js/npm, or put {name}-{version}.tgz (from https://registry.npmjs.org/{name}/-/"
            f"{name}-{version}.tgz) at that path")
    tgz.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tgz.parent) as tmp:
        proc = subprocess.run([npm, "pack", f"{name}@{version}", "--silent", "--pack-destination", tmp],
                              capture_output=True, text=True, timeout=600)
        got = Path(tmp) / f"{name}-{version}.tgz"
        if proc.returncode != 0 or not got.is_file():
            raise RuntimeError(f"`npm pack {name}@{version}` failed: {proc.stderr.strip()[-500:]}")
        if integrity(got) != expected:
            raise RuntimeError(f"{name}-{version}.tgz from npm does not match its published hash")
        os.replace(got, tgz)   # atomic: a half-written tarball is never cached
    return tgz
