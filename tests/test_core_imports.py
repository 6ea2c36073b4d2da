"""The core is sans-I/O: it imports the standard library and itself, nothing else of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "app" / "core"
FORBIDDEN = {
    "fastapi",
    "starlette",
    "redis",
    "sqlite3",
    "aiosqlite",
    "uvicorn",
    "websockets",
    "httpx",
    "orjson",
}


def imported(path: Path, source: str | None = None) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    package = ["app", "core", *path.relative_to(CORE).parent.parts]
    names: list[str] = []
    text = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            # `from . import x` / `from app import x` may name submodules
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def offences(names: list[str]) -> list[str]:
    bad = []
    for name in names:
        top = name.split(".")[0]
        outside_core = top == "app" and name not in ("app", "app.core")
        if top in FORBIDDEN or (outside_core and not name.startswith("app.core.")):
            bad.append(name)
    return bad


MODULES = sorted(CORE.rglob("*.py"))


def test_there_are_core_modules() -> None:
    names = {p.name for p in MODULES}
    assert {"chat.py", "messages.py", "presence.py", "outputs.py", "rollout.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io_and_nothing_outside_core(path: Path) -> None:
    assert offences(imported(path)) == []


def test_the_checker_catches_what_it_should() -> None:
    assert offences(["fastapi.routing"]) == ["fastapi.routing"]
    assert offences(["sqlite3"]) == ["sqlite3"]
    assert offences(["app.hub", "app.transports.codec"]) == ["app.hub", "app.transports.codec"]
    assert offences(["app.core.messages", "dataclasses", "typing"]) == []
    assert offences(["app.corex"]) == ["app.corex"]


def test_relative_imports_are_resolved() -> None:
    here = CORE / "chat.py"
    assert "app.core.messages" in imported(here)
    source = "from ..hub import Hub\nfrom .. import settings\nimport redis.asyncio\n"
    assert offences(imported(here, source)) == [
        "app.hub",
        "app.hub.Hub",
        "app.settings",
        "redis.asyncio",
    ]
    # a function-level (lazy) import counts too
    lazy = "def f():\n    import sqlite3\n"
    assert offences(imported(here, lazy)) == ["sqlite3"]
