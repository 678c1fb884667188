"""No result of our runs is typed by hand into the book's prose or the README.

Numbers about runs reach the pages through glue (notebooks), csv-table includes of committed
tables (``book/tables``, ``book/generated``) or the README's generated results block
(``python -m dualpath_book.sync``). This test reads every prose page as a reader would, drops
what is not prose (code, math, directives, glue and cite roles, links, the generated block) and
fails on any number that looks like a measurement — a decimal, a percentage, a duration — unless
it is a config value of some preset (a setting, not a result) or one of the few constants below.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dualpath.config import PRESETS, preset
from dualpath_book import readme, sync

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(p for p in (ROOT / "book").rglob("*.md") if "generated" not in p.parts) + [ROOT / "README.md"]

# Constants the prose may state, each with why it is not a result of our runs.
ALLOWED = {
    "3.6": "the size in GB of the GoogleNews word2vec file",
    "1711.05535": "the paper's arXiv id",
    "3.11": "the Python version the environment needs",
    "2.0": "Jupyter Book 2.0, the version that cannot build offline",
    "30 min": "the book's time budget (issue #10), not a measurement",
    "30 minutes": "the same budget",
    "30-minute": "the same budget",
    "100%": "a definition (every query), not a measurement",
    "0.4": "an input-dropout setting that probe 23 tried (a setting, not a result)",
    "0.002": "the official code's effective learning rate of W_share's bias (SPEC 3.1)",
}

_DROP = [
    re.compile(r"<!-- results:.*?<!-- end of results -->", re.S),   # README: generated from tables
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"^(`{3,}|~{3,}).*?^\1", re.S | re.M),                # fenced code and directives
    re.compile(r"^:::.*?^:::", re.S | re.M),                          # colon-fenced directives
    re.compile(r"\$\$.*?\$\$", re.S),
    re.compile(r"\$[^$\n]+\$"),
    re.compile(r"\{[a-z:-]+\}`[^`]*`"),                               # roles: glue, cite, doc, eq
    re.compile(r"`[^`\n]*`"),
    re.compile(r"https?://\S+"),
    re.compile(r"\]\([^)]*\)"),                                       # link targets
]
_RESULT = re.compile(
    r"(?<![\w.§])("                                                  # not a SPEC section (§3.1)
    r"\d+(?:\.\d+)?\s?%"                                              # a percentage
    r"|\d+(?:\.\d+)?(?:\s|-)?(?:min|minutes?|s|seconds?|h|hours?)\b"  # a duration
    r"|\d+\.\d+(?!\.\d)"                                              # a decimal (not a version)
    r")(?![\w.]*\d)")


def _config_values() -> set[str]:
    """Every number some preset sets, as prose writes it: settings are not results."""
    values: set[str] = set()
    for name in PRESETS:
        for f in dataclasses.fields(cfg := preset(name)):
            v = getattr(cfg, f.name)
            for x in (v if isinstance(v, list) else [v]):
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    values.update({f"{x:g}", f"{float(x):.1f}", f"{float(x):.2f}"})
    return values


def prose(text: str) -> str:
    for pattern in _DROP:
        text = pattern.sub(" ", text)
    return text


def typed_results(path: Path) -> list[str]:
    allowed = set(ALLOWED) | _config_values()
    found = []
    for m in _RESULT.finditer(prose(path.read_text())):
        token = m.group(1)
        number = re.match(r"\d+(?:\.\d+)?", token).group(0)
        if token in allowed or token.replace(" ", "") in allowed or (token == number and number in allowed):
            continue
        line = path.read_text().count("\n", 0, path.read_text().find(token)) + 1
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        found.append(f"{shown}:~{line}: {token!r}")
    return found


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_run_result_is_typed_into_the_prose(path):
    found = typed_results(path)
    assert not found, ("numbers that look like results, typed by hand (glue them, include a table, "
                       "or let python -m dualpath_book.sync write them):\n" + "\n".join(found))


def test_the_scanner_catches_what_it_should(tmp_path):
    page = """Our run reached R-sum 239.2 after 29 min 51 s (text accuracy 0.13, 5.4% better).
`code 12.5` and $x = 0.7$ and {glue:text}`rsum:.1f` and dropout 0.75 and Jupyter Book 2.0 are fine.
```{code-cell}
x = 99.9
```
"""
    tmp = tmp_path / "page.md"
    tmp.write_text(page)
    found = [f.split(": ", 1)[1] for f in typed_results(tmp)]
    assert found == ["'239.2'", "'29 min'", "'51 s'", "'0.13'", "'5.4%'"]


def test_the_readme_results_are_written_from_the_tables():
    assert not readme.readme_out_of_date(), "run python -m dualpath_book.sync"
    assert not sync.out_of_sync(), "run python -m dualpath_book.sync"
    block = readme.results_markdown()
    runs = readme.book_runs.load()
    latest = runs[runs.recipe == readme.book_runs.describe_recipe(preset("cpu"))].iloc[-1]
    assert f"R-sum {latest.test_rsum:.1f}" in block and latest.commit in block
