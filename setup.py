"""Packaging beyond pyproject.toml: a wheel carries the tables and grids the book's pages read.

In the repository ``dualpath_book`` reads them from ``book/tables/`` and ``grids/``; a wheel (the
Colab install cell) has no repository, so the build copies them into ``dualpath_book/resources/``
(``dualpath_book.layout`` looks there when it is not in a checkout).
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
RESOURCES = {"tables": ("book/tables", ("*.csv", "*.npz")), "grids": ("grids", ("*.yaml",))}


class BuildWithResources(build_py):
    def run(self):
        super().run()
        for name, (folder, patterns) in RESOURCES.items():
            target = Path(self.build_lib) / "dualpath_book" / "resources" / name
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(p for pattern in patterns for p in (HERE / folder).glob(pattern)):
                self.copy_file(str(path), str(target / path.name))


setup(cmdclass={"build_py": BuildWithResources})
