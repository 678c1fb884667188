"""Sizes of the house, measured one way so that two commits can be compared.

    python scripts/house_sizes.py            # this checkout
    python scripts/house_sizes.py --top 15   # more of the largest modules

Prints, for `lib/dualpath` (the method) and `lib/dualpath_book` (the book machinery): modules and lines,
the largest modules, functions over 40 and over 60 lines (a function's lines run from its `def` to its
last statement, decorators and docstring included), import arrows between modules of one package
(module-level and function-level imports alike), the import circles among them, and the imports made
inside functions. Lines are physical lines of the file, blank and comment lines included.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dualpath", "dualpath_book")


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    base = ROOT / "lib"
    found = {}
    for path in sorted((base / package).rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method in a module."""
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out.append((prefix + child.name, child.end_lineno - start + 1))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def imported(name: str, node: ast.AST, is_package: bool) -> list[str]:
    """The absolute module names an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = name.split(".") if is_package else name.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def import_graph(mods: dict[str, Path]) -> tuple[dict[str, set[str]], int]:
    """Arrows between the package's modules, and how many import statements sit inside functions."""
    graph, inner = {}, 0
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        targets = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner += sum(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(fn))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported(name, node, is_package):
                    if target in mods and target != name:
                        targets.add(target)
        # a module importing its own package's face is not an arrow worth counting: the face re-exports
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph, inner


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def report(top: int) -> None:
    every = []
    for package in PACKAGES:
        mods = modules(package)
        lines = {n: len(p.read_text().splitlines()) for n, p in mods.items()}
        fns = []
        for n, p in mods.items():
            fns += [(f"{n}:{f}", k) for f, k in functions(ast.parse(p.read_text()))]
        graph, inner = import_graph(mods)
        arrows = sum(len(t) for t in graph.values())
        sizes = sorted(k for _, k in fns)
        median = sizes[len(sizes) // 2] if sizes else 0
        print(f"## lib/{package}: {len(mods)} modules, {sum(lines.values())} lines, "
              f"{len(fns)} functions (median {median} lines)")
        print(f"functions over 40 lines: {sum(k > 40 for _, k in fns)}; over 60: {sum(k > 60 for _, k in fns)}")
        for f, k in sorted(fns, key=lambda x: -x[1]):
            if k > 60:
                print(f"  {k:4d}  {f}")
        print(f"import arrows: {arrows}; imports inside functions: {inner}")
        found = circles(graph)
        print(f"import circles: {len(found)}")
        for group in found:
            print("  " + " <-> ".join(group))
        every += [(lines[n], str(mods[n].relative_to(ROOT))) for n in mods]
        print()
    print(f"## the {top} largest modules of lib/")
    total = sum(k for k, _ in every)
    biggest = sorted(every, reverse=True)[:top]
    for k, path in biggest:
        print(f"  {k:5d}  {path}")
    print(f"together {sum(k for k, _ in biggest)} of {total} lines")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="how many of the largest modules to list")
    report(parser.parse_args().top)
