"""python -m dualpath.data fetch NAME: download, verify and unpack a dataset (see dualpath.data.fetch).

Prints one line on stdout, the dataset folder (progress and notes go to stderr). A download or
check that fails prints ``error: ...``, saying what is missing and where to put it by hand, and
exits with status 1.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import DataError
from .fetch import fetch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath.data", description="Dataset tools.")
    commands = ap.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download, verify and unpack a dataset")
    fetch_cmd.add_argument("name", help="a dataset of the sources file, e.g. flickr8k")
    fetch_cmd.add_argument("--to", help="data root to put it in (default: $DUALPATH_DATA, else "
                                        "~/.cache/dualpath/data)")
    fetch_cmd.add_argument("--sources", help="JSON file of dataset sources (default: $DUALPATH_SOURCES, "
                                             "else the packaged sources.json)")
    fetch_cmd.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    try:
        folder = fetch(args.name, args.to, sources=args.sources, progress=not args.no_progress, log=_note)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(folder)
    return 0


def _note(message: str) -> None:
    # stdout carries only the folder, so that scripts can capture it
    print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
