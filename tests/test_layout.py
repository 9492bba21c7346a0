"""The tree shows the pipeline: one folder per stage of a message's path.

- ``reading/``: bytes to facts; ``trust/``: who really sent it; ``plan.py``: facts and a
  ticket to a plan. These are the pure core: testable without a server, so neither they
  nor anything they import may reach for the network, the ledger or the event loop.
  (``trust.authenticity.verify_dkim`` asks DNS through dkimpy: the one I/O function the
  core holds, called by the worker in a thread.)
- ``halo/``, ``answers/``, ``mailboxes/``, ``senders/``, ``connections/``, ``console/``:
  the shell's parts, each given what it needs.
- ``worker.py`` owns the loop; ``service.py`` wires the parts; ``commands/`` are what a
  person types. Dependencies point one way: commands use the wiring, never the reverse.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "responder"

SHELL_ONLY = {
    "httpx", "imapclient", "aiosmtplib", "aiosmtpd", "sqlite3", "asyncio", "socket",
    "msal", "starlette", "uvicorn", "subprocess",
}
PURE = {"reading", "trust", "plan"}  # and the pure modules of the shell's stages:
PURE_MODULES = {"halo.tickets", "answers.compose", "answers.digest"}

# What each part may import from the package (besides itself). config, logs and metrics
# are the settings tree and the instruments every part is handed.
BASE = {"config", "logs", "metrics", "terminal", "__init__"}
MAY_IMPORT: dict[str, set[str]] = {
    "reading": set(),
    "trust": {"reading"},
    "plan": {"reading", "trust", "halo.tickets"},
    "halo": {"connections.budget"},
    "connections": set(),
    "ledger": set(),
    "answers": {"reading", "plan", "halo.tickets", "ledger", "senders"},
    "mailboxes": {"reading", "connections", "ledger"},
    "senders": {"connections"},
    "refile": {"ledger", "mailboxes", "plan"},  # a filed message back to the inbox
    "records": {"ledger", "plan", "reading", "trust", "halo.tickets"},  # ledger rows
    "console": {"ledger", "mailboxes", "senders", "refile"},
    "analysis": {"reading"},  # reading in worker processes, under a time limit
    "worker": {"reading", "trust", "plan", "halo", "answers", "ledger", "mailboxes",
               "senders", "analysis", "records"},
    "service": {"reading", "trust", "plan", "halo", "answers", "ledger", "mailboxes",
                "senders", "connections", "console", "worker", "analysis"},
    "commands": {"*"},  # and nothing imports them but each other
    "config": {"reading.banners"},  # the settings check a site's banner patterns
    "logs": set(),
    "metrics": set(),
    "terminal": set(),
    "__init__": set(),
    "__main__": {"commands"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> tuple[set[str], set[str]]:
    """The package modules ``module`` imports, and the outside packages."""
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "responder" or name.startswith("responder."):
                inner = name.removeprefix("responder").removeprefix(".") or "__init__"
                if inner in MODULES:
                    inside.add(inner)
            elif not isinstance(node, ast.ImportFrom) or name == node.module:
                outside.add(name.split(".")[0])
    inside.discard(module)
    return inside, outside


def _reach(module: str) -> tuple[set[str], set[str]]:
    """Every package module ``module`` imports, directly or not, and the outside ones."""
    inside: set[str] = set()
    outside: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in inside:
            continue
        inside.add(current)
        more, out = _imports(current)
        todo += more
        outside |= out
    return inside, outside


def _part(module: str) -> str:
    return module.split(".")[0]


def _allowed(importer: str, imported: str) -> bool:
    allowed = MAY_IMPORT[_part(importer)]
    return ("*" in allowed or _part(imported) in BASE | {_part(importer)}
            or _part(imported) in allowed or imported in allowed)


CORE = sorted(m for m in MODULES if _part(m) in PURE or m in PURE_MODULES)


@pytest.mark.parametrize("module", CORE)
def test_the_core_does_no_io(module: str) -> None:
    inside, outside = _reach(module)
    assert outside & SHELL_ONLY == set()
    assert {m for m in inside if _part(m) not in PURE | BASE and m not in PURE_MODULES
            and m != "reading.banners"} == set()


def test_every_part_is_placed() -> None:
    """A new module or folder must say where it stands in the pipeline."""
    assert {_part(m) for m in MODULES} <= set(MAY_IMPORT)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_dependencies_point_one_way(module: str) -> None:
    inside, _ = _imports(module)
    assert {m for m in inside if not _allowed(module, m)} == set()


def test_no_import_circles() -> None:
    graph = {m: _imports(m)[0] for m in MODULES}
    circles = [scc for scc in _strongly_connected(graph) if len(scc) > 1]
    assert circles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: every set of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.append(member)
                    if member == node:
                        break
                found.append(sorted(scc))
    return found


def test_the_adapters_live_in_their_own_packages() -> None:
    assert {p.stem for p in (PACKAGE / "mailboxes").glob("*.py")} >= {
        "__init__", "imap", "maildir", "graph"}
    assert {p.stem for p in (PACKAGE / "senders").glob("*.py")} >= {"__init__", "smtp", "graph"}


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(doc: Path) -> None:
    named = set(re.findall(r"responder/[\w/]+\.py", doc.read_text(encoding="utf-8")))
    assert {n for n in named if not (ROOT / n).exists()} == set()


def test_the_tree_in_the_docs_shows_every_part() -> None:
    """The guide's tree names every folder of the package and every top-level module."""
    text = (ROOT / "docs" / "how-it-works.md").read_text(encoding="utf-8")
    tree = text.split("```text\nresponder/", 1)[1].split("```", 1)[0]
    parts = {p.name + "/" for p in PACKAGE.iterdir() if p.is_dir() and p.name[0] not in "_."}
    parts |= {p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("__")}
    parts.discard("pages/")
    assert {p for p in parts if p not in tree} == set()
