"""Imports point down only: project -> apps -> runtime/ops -> libraries (runtime/README.md).

Checked on the source (every import statement, also inside functions), so a shortcut that
would tie the framework patches or the operational modules to an app is caught at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = {"accounts", "attachments", "chats", "feeds", "webclient", "devtools", "outbox"}
PROJECT = {"messenger"}
# seed_data offers the bulk loader of the development-only app when it is installed (a lazy import).
ALLOWED = {("chats/management/commands/seed_data.py", "devtools")}


def _imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [(str(path.relative_to(ROOT)), name.split(".")[0]) for name in names]
    return found


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("runtime", APPS | PROJECT),
        ("ops", APPS | PROJECT | {"runtime"}),
        ("accounts", {"attachments", "chats", "feeds", "webclient", "devtools"} | PROJECT),
        ("attachments", {"chats", "feeds", "webclient", "devtools"} | PROJECT),
        ("chats", {"feeds", "webclient", "devtools"} | PROJECT),
        # The read side of channels: it reads chats' tables and follows their events, never the reverse.
        ("feeds", {"webclient", "devtools"} | PROJECT),
        # Generic infrastructure for the apps' events: it knows no app.
        ("outbox", {"accounts", "attachments", "chats", "feeds", "webclient", "devtools"} | PROJECT),
    ],
)
def test_imports_point_down(package, forbidden):
    """Infrastructure never imports an app or the project; accounts does not import chats; the outbox
    imports no other app."""
    wrong = [(path, name) for path, name in _imports(package) if name in forbidden and (path, name) not in ALLOWED]
    assert wrong == []


def test_the_check_sees_imports():
    """Not vacuous: the scan finds the imports it is meant to judge."""
    assert ("chats/consumers.py", "runtime") in _imports("chats")
    assert ("runtime/realtime.py", "ops") in _imports("runtime")
