"""docs/design.md stays true to the code: its module tree lists exactly the modules under
bench/ and analysis/, and every reference to the design document names a section it has.

The tree is the fenced block after `<!-- module-tree -->`: two spaces of indent per level,
a package as `name/`, a module as `name.py`, then a description.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "design.md"
TOPS = ("bench", "analysis")
MARKER = "<!-- module-tree -->"
ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z0-9_]+(?:/|\.py))\s+(?P<what>\S.*)$")
SKIP_DIRS = {".git", ".venv", ".nox", "__pycache__", "results", ".mypy_cache",
             ".ruff_cache", ".pytest_cache", "node_modules"}
TEXT = {".py", ".md", ".toml", ".yaml", ".yml", ".ipynb", ".sh", ".go", ".txt", ".cfg"}


def tree_block(text: str) -> list[str]:
    """The lines of the fenced block that follows the marker."""
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```[a-z]*\n(.*?)\n```", after, re.DOTALL)
    assert match, f"no fenced block after {MARKER}"
    return match.group(1).splitlines()


def parse_tree(lines: list[str]) -> tuple[set[str], set[str]]:
    """(module paths, package paths) the tree names, e.g. 'bench/agent/prober.py'."""
    modules: set[str] = set()
    packages: set[str] = set()
    stack: list[str] = []
    for number, line in enumerate(lines, 1):
        m = ENTRY.match(line)
        assert m, f"tree line {number} is not 'name  description': {line!r}"
        depth, rem = divmod(len(m["indent"]), 2)
        assert rem == 0 and depth <= len(stack), f"tree line {number}: bad indent: {line!r}"
        del stack[depth:]
        name = m["name"]
        path = "/".join([*stack, name.rstrip("/")])
        if name.endswith("/"):
            packages.add(path)
            stack.append(name.rstrip("/"))
        else:
            assert depth > 0, f"tree line {number}: a module outside any package: {line!r}"
            modules.add(path)
    return modules, packages


def code_tree() -> tuple[set[str], set[str]]:
    """(module paths, package paths) that exist under bench/ and analysis/."""
    modules: set[str] = set()
    packages: set[str] = set()
    for top in TOPS:
        for py in (ROOT / top).rglob("*.py"):
            rel = py.relative_to(ROOT)
            if "__pycache__" in rel.parts:
                continue
            packages.update("/".join(rel.parts[:i]) for i in range(1, len(rel.parts)))
            if py.name != "__init__.py":
                modules.add(rel.as_posix())
    return modules, packages


def test_parse_tree_reads_nesting() -> None:
    modules, packages = parse_tree([
        "bench/        top", "  a.py        one", "  sub/        pkg", "    b.py      two",
        "  c.py        three", "analysis/     other", "  d.py        four"])
    assert modules == {"bench/a.py", "bench/sub/b.py", "bench/c.py", "analysis/d.py"}
    assert packages == {"bench", "bench/sub", "analysis"}


def test_module_tree_matches_the_code() -> None:
    listed_modules, listed_packages = parse_tree(tree_block(DOC.read_text()))
    modules, packages = code_tree()
    problems = []
    if missing := sorted(modules - listed_modules):
        problems.append("modules missing from the tree: " + ", ".join(missing))
    if stale := sorted(listed_modules - modules):
        problems.append("the tree lists modules that do not exist: " + ", ".join(stale))
    if missing := sorted(packages - listed_packages):
        problems.append("packages missing from the tree: " + ", ".join(missing))
    if stale := sorted(listed_packages - packages):
        problems.append("the tree lists packages that do not exist: " + ", ".join(stale))
    assert not problems, f"update the module tree in {DOC.relative_to(ROOT)} §10:\n" + \
        "\n".join(problems)


def _text_files() -> list[Path]:
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        out += [Path(folder) / f for f in files if Path(f).suffix in TEXT]
    return out


def test_no_reference_to_a_design_file_the_repository_lacks() -> None:
    """The old references pointed at a DESIGN.md outside the repository."""
    stale = re.compile(r"\bDESIGN(?:\.md)?\b")
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _text_files() if p != Path(__file__)
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
            if stale.search(line)]
    assert not hits, "references to a DESIGN file (use docs/design.md §N): " + ", ".join(hits)


def test_every_section_reference_exists() -> None:
    sections = {m for m in re.findall(r"^## (\d+)\. ", DOC.read_text(), re.MULTILINE)}
    ref = re.compile(r"docs/design\.md(?: §(\d+))?")
    refs = [(p, n, m.group(1)) for p in _text_files()
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
            for m in ref.finditer(line)]
    assert len(refs) >= 10  # the docstrings do cite it
    bad = [f"{p.relative_to(ROOT)}:{n} §{s}" for p, n, s in refs if s and s not in sections]
    assert not bad, f"sections that docs/design.md does not have: {', '.join(bad)}"
