"""The tree shows the architecture: a pure core, adapters in their own packages.

The core turns bytes into facts and facts into a plan; it must stay testable without a
server, so neither it nor anything it imports from the package may reach for the
network, the ledger or the event loop. (``authenticity.verify_dkim`` asks DNS through
dkimpy: the one I/O function the core holds, called by the worker in a thread.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "responder"

CORE = [
    "message", "addresses", "body", "reply", "quotes", "html_reply", "banners", "machine",
    "language", "decision", "authresults", "authenticity", "plan", "tickets", "answers", "digest",
    "discovery",
]
SHELL_ONLY = {
    "httpx", "imapclient", "aiosmtplib", "aiosmtpd", "sqlite3", "asyncio", "socket",
    "msal", "starlette", "uvicorn", "subprocess",
}


def _source(module: str) -> Path:
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts).with_suffix(".py")
    return path if path.exists() else PACKAGE.joinpath(*parts, "__init__.py")


def _imports(module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(_source(module).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "responder":
                found |= {f"responder.{alias.name}" for alias in node.names}
    return found


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
        for name in _imports(current):
            if name.startswith("responder."):
                todo.append(name)
            elif name != "responder":
                outside.add(name.split(".")[0])
    return inside, outside


@pytest.mark.parametrize("module", CORE)
def test_the_core_does_no_io(module: str) -> None:
    inside, outside = _reach(f"responder.{module}")
    assert outside & SHELL_ONLY == set()
    shell = {m for m in inside if m.split(".")[1] in ("mailboxes", "senders", "ledger",
                                                        "halo", "worker", "service")}
    assert shell == set()


def test_the_adapters_live_in_their_own_packages() -> None:
    assert {p.stem for p in (PACKAGE / "mailboxes").glob("*.py")} >= {
        "__init__", "imap", "maildir", "graph"}
    assert {p.stem for p in (PACKAGE / "senders").glob("*.py")} >= {"__init__", "smtp", "graph"}
    assert not any((PACKAGE / f"{name}.py").exists()
                   for name in ("imap", "maildir", "smtp", "mailbox"))
