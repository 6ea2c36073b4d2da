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


def imported(path: Path, source: str | None = None, package: list[str] | None = None) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    if package is None:
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


# ---------------------------------------------------------------------- floors

APP = CORE.parent

#: the floors of docs/architecture.md, lowest first: a module may import its own
#: floor and the floors below, never one above
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("app.core",)),
    ("wire", ("app.wire",)),
    (
        "support",
        (
            "app.settings",
            "app.logs",
            "app.metrics",
            "app.cohorts",
            "app.cost",
            "app.scorecard",
            "app.security",
            "app.auth",
        ),
    ),
    ("stores", ("app.backends",)),
    ("hub", ("app.hub", "app.guard")),
    ("transports", ("app.transports",)),
    ("bots", ("app.bots",)),
    ("entry point", ("app.main", "app.__main__")),
]

#: no module of ours is longer than this (STYLE.md: avoid 1,000-line modules)
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(APP.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(name: str) -> int | None:
    for level, (_, prefixes) in enumerate(FLOORS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return level
    return None


def imported_by(path: Path) -> list[str]:
    """The ``app.*`` modules ``path`` imports (a name that is not a module counts as its module)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = [n for n in imported(path, package=package) if n == "app" or n.startswith("app.")]
    return [n for n in names if floor_of(n) is not None or n == "app"]


APP_MODULES = sorted(p for p in APP.rglob("*.py") if "static" not in p.parts)


def test_every_module_of_app_has_a_floor() -> None:
    assert [module_name(p) for p in APP_MODULES if floor_of(module_name(p)) is None] == ["app"]


@pytest.mark.parametrize("path", APP_MODULES, ids=module_name)
def test_no_import_runs_up_a_floor(path: Path) -> None:
    mine = floor_of(module_name(path))
    if mine is None:
        return  # app/__init__.py
    upward = [n for n in imported_by(path) if (floor_of(n) or 0) > mine]
    assert upward == [], f"{module_name(path)} ({FLOORS[mine][0]}) imports a higher floor"


@pytest.mark.parametrize("path", APP_MODULES, ids=module_name)
def test_no_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_floor_checker_catches_an_upward_import() -> None:
    assert floor_of("app.hub.connection") == floor_of("app.guard")
    assert floor_of("app.wire") < floor_of("app.backends.redis") < floor_of("app.hub")  # type: ignore[operator]
    assert floor_of("app.transports.websocket") > floor_of("app.hub")  # type: ignore[operator]
