"""Where the JavaScript package (``clients/js``) and its node dependencies are.

``make node-deps`` (a prerequisite of ``make test``) runs ``npm ci`` there from the
committed lockfile. Without node, npm or those modules the JS tests skip with a loud reason,
except under ``CI=true``, where they fail: CI must type-check and pack the package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
JS_DIR = ROOT / "clients" / "js"
NODE_MODULES = JS_DIR / "node_modules"
TSC = NODE_MODULES / "typescript" / "bin" / "tsc"
#: Vue's browser build without the template compiler: no eval, so it runs under our CSP.
VUE_BROWSER_BUILD = NODE_MODULES / "vue" / "dist" / "vue.runtime.esm-browser.prod.js"


def require_node_deps() -> tuple[str, str]:
    """``(node, npm)`` executables, with ``clients/js/node_modules`` installed; else skip/fail."""
    node, npm = shutil.which("node"), shutil.which("npm")
    missing = [name for name, found in (("node", node), ("npm", npm)) if not found]
    missing += [
        f"{path.relative_to(ROOT)} (run `make node-deps`)"
        for path in (TSC, VUE_BROWSER_BUILD)
        if not path.exists()
    ]
    if missing:
        message = "missing " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs the JS toolchain: " + message)
        pytest.skip("SKIPPING JS CLIENT TESTS: " + message)
    assert node is not None and npm is not None
    return node, npm
