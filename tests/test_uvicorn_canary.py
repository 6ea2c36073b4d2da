"""The canary for the one place that leans on uvicorn's internals.

``app/transports/uvicorn_direct.py`` subclasses private uvicorn classes and
reads their private attributes. Every one of them is listed in its
``PRIVATE_SURFACE``; this module checks each against the installed uvicorn and
fails with a message naming what moved, so an upgrade that would break the
direct write path is caught here, by name, before any server starts. It also
keeps the tested minors, pyproject.toml's uvicorn range and the lock in step.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from support.source import assigned_on_self

from app.transports import uvicorn_direct

ROOT = Path(__file__).resolve().parent.parent
SURFACE = [
    (module, cls, name, shape)
    for module, cls, names in uvicorn_direct.PRIVATE_SURFACE
    for name, shape in names.items()
]


def _class(module: str, cls: str) -> type:
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"uvicorn {version('uvicorn')} has no {module}.{cls}: {exc}")
    assert isinstance(found, type), f"{module}.{cls} is no longer a class"
    return found


@pytest.mark.parametrize(("module", "cls", "name", "shape"), SURFACE, ids=lambda v: str(v))
def test_private_surface_is_still_there(module: str, cls: str, name: str, shape: str) -> None:
    klass = _class(module, cls)
    where = f"uvicorn {version('uvicorn')}: {module}.{cls}.{name}"
    if shape == "attr":
        assert name in assigned_on_self(klass), (
            f"{where} is no longer assigned anywhere in the class: "
            "app/transports/uvicorn_direct.py reads or writes it"
        )
        return
    method = getattr(klass, name, None)
    assert callable(method), f"{where} is gone (uvicorn_direct overrides or calls it)"
    params = "(" + ", ".join(inspect.signature(method).parameters) + ")"
    assert params == shape, f"{where} changed shape: {params}, uvicorn_direct expects {shape}"


def test_public_pieces_the_subclasses_use() -> None:
    """The type aliases and classes imported at the top of uvicorn_direct."""
    types = importlib.import_module("uvicorn._types")
    for alias in ("ASGIReceiveEvent", "ASGISendEvent"):
        assert hasattr(types, alias), f"uvicorn._types.{alias} is gone"
    _class("uvicorn.config", "Config")
    _class("uvicorn.server", "ServerState")


def test_the_installed_uvicorn_is_a_tested_minor() -> None:
    installed = version("uvicorn")
    minor = ".".join(installed.split(".")[:2])
    assert minor in uvicorn_direct.TESTED_MINORS, (
        f"uvicorn {installed} is installed but uvicorn_direct was tested on "
        f"{uvicorn_direct.TESTED_MINORS}: run the suite on it, then add {minor} there "
        "and to pyproject.toml's range"
    )


def test_pyproject_range_covers_exactly_the_tested_minors() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = next(d for d in project["dependencies"] if d.startswith("uvicorn"))
    bounds = re.search(r">=([\d.]+),<([\d.]+)", spec)
    assert bounds is not None, f"pyproject's uvicorn requirement has no >=,< range: {spec}"
    low, high = bounds.groups()
    lows, highs = (tuple(int(x) for x in v.split(".")[:2]) for v in (low, high))
    minors = sorted(tuple(int(x) for x in m.split(".")) for m in uvicorn_direct.TESTED_MINORS)
    assert lows == minors[0], f"pyproject's uvicorn range starts at {low}, tested: {minors}"
    assert highs == (minors[-1][0], minors[-1][1] + 1), (
        f"pyproject's uvicorn range ends before {high}; tested minors: {minors}"
    )
    locked = re.search(r"^uvicorn==([\d.]+)", (ROOT / "requirements/dev.txt").read_text(), re.M)
    assert locked is not None and locked.group(1) == version("uvicorn"), (
        "the installed uvicorn is not the locked one: reinstall from requirements/dev.txt"
    )
