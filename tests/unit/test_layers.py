"""The layers the design document promises, checked on the source: the node agent is
stdlib-only (it runs alone in the agent image), and analysis never talks to a cluster.

import-linter (`lint-imports`, run by `nox -s lint`) checks the harness's own layers; this
test covers what it cannot express: "nothing but the standard library"."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def test_agent_imports_only_the_standard_library_and_itself() -> None:
    files = sorted((ROOT / "bench" / "agent").glob("*.py"))
    assert files
    for f in files:
        for mod in _imports(f):
            top = mod.split(".")[0]
            ok = top in sys.stdlib_module_names or mod == "bench" or mod.startswith("bench.agent")
            assert ok, f"{f.relative_to(ROOT)} imports {mod}: the agent must stay stdlib-only"


def test_analysis_imports_no_cluster_client() -> None:
    banned = ("kubernetes", "kr8s", "httpx", "httpcore", "urllib3")
    for f in sorted((ROOT / "analysis").rglob("*.py")):
        for mod in _imports(f):
            assert mod.split(".")[0] not in banned, f"{f.relative_to(ROOT)} imports {mod}"
