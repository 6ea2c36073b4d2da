"""Reading a dependency's source: which attributes its classes assign.

The uvicorn canary and the HTTP-state tests pin the private attributes our
subclasses rely on or replace with slots; both ask this one question of uvicorn's
source, so a new uvicorn fails them by name rather than at run time.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

__all__ = ["assigned_on_self"]


def assigned_on_self(cls: type) -> set[str]:
    """Every ``self.<name> = …`` / ``self.<name>: T = …`` in the class and its bases,
    and its class-level annotations."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__ == "builtins":
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    names.add(target.attr)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)  # a class-level annotation
    return names
