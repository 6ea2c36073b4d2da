"""The typed JS package (``clients/js``): its declarations type-check a usage example, tsc
rejects a type error against them, and ``npm pack`` yields a tarball that installs and works.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

from support.node_deps import JS_DIR, ROOT, TSC, require_node_deps

EXAMPLE = JS_DIR / "examples" / "usage.ts"
MODULES = ["lastra-client.js", "lastra-transports.js", "lastra-tabs.js", "lastra-vue.js"]
NPM_ENV = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}


def run(cmd: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=NPM_ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def tsc(node: str, project: Path) -> subprocess.CompletedProcess[str]:
    command = [node, str(TSC), "--noEmit", "--pretty", "false", "-p", str(project)]
    return run(command, project.parent)


def test_usage_example_type_checks() -> None:
    """``tsc --noEmit`` passes; its ``@ts-expect-error`` lines must still be errors."""
    node, _ = require_node_deps()
    result = tsc(node, JS_DIR / "tsconfig.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert EXAMPLE.read_text().count("@ts-expect-error") >= 5


def test_tsc_fails_on_a_type_error(tmp_path: Path) -> None:
    """The same example plus one wrong line fails, at that line: the check is real."""
    node, _ = require_node_deps()
    source = EXAMPLE.read_text()
    source = source.replace("'@lastra/chat-client/vue'", json.dumps(str(JS_DIR / "lastra-vue.js")))
    source = source.replace("'@lastra/chat-client'", json.dumps(str(JS_DIR / "lastra-client.js")))
    wrong = "export const wrong: number = useLastraChat({ userName: 'x' }).status.value;\n"
    (tmp_path / "bad.ts").write_text(source + wrong)
    (tmp_path / "node_modules").symlink_to(JS_DIR / "node_modules")  # for 'vue'
    config = {"extends": str(JS_DIR / "tsconfig.json"), "files": ["bad.ts"], "include": []}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))

    result = tsc(node, tmp_path / "tsconfig.json")

    line = len(source.splitlines()) + 1
    errors = [ln for ln in result.stdout.splitlines() if ": error TS" in ln]
    assert result.returncode != 0
    assert len(errors) == 1, result.stdout
    assert re.match(rf"bad\.ts\({line},\d+\): error TS2322: Type '.*' is not assignable", errors[0])


def test_npm_pack_yields_a_package_that_installs(tmp_path: Path) -> None:
    node, npm = require_node_deps()
    packed = run([npm, "pack", "--pack-destination", str(tmp_path)], JS_DIR)
    assert packed.returncode == 0, packed.stderr
    tarball = tmp_path / packed.stdout.strip().splitlines()[-1]

    with tarfile.open(tarball) as tar:
        names = {m.name.removeprefix("package/") for m in tar.getmembers()}
        scripts = {n for n in names if n.endswith(".js") and not n.endswith(".d.ts")}
        # The entry points and whatever they import (the import below proves it is all there).
        assert set(MODULES) <= scripts
        types = {p.name for p in JS_DIR.glob("*.d.ts")}
        assert names == scripts | types | {"README.md", "package.json"}
        for module in scripts:  # the very modules the app serves
            member = tar.extractfile(f"package/{module}")
            assert member is not None
            assert member.read() == (ROOT / "app" / "static" / module).read_bytes(), module

    # Install it in an empty project, as a user would: vue (the peer) from the registry, at
    # the version the lockfile pins (usually straight from npm's cache).
    lock = json.loads((JS_DIR / "package-lock.json").read_text())
    vue = lock["packages"]["node_modules/vue"]["version"]
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    installed = run(
        [npm, "install", "--no-audit", "--prefer-offline", str(tarball), f"vue@{vue}"], project
    )
    assert installed.returncode == 0, installed.stderr

    imported = run(
        [
            node,
            "--input-type=module",
            "-e",
            "const core = await import('@lastra/chat-client');"
            "const vue = await import('@lastra/chat-client/vue');"
            "console.log(JSON.stringify({core: Object.keys(core).sort(),"
            " vue: Object.keys(vue).sort(), same: core.LastraClient === vue.LastraClient}));",
        ],
        project,
    )
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {
        "core": ["LastraClient", "Status", "default"],
        "vue": ["LastraClient", "LastraError", "Status", "default", "useLastraChat"],
        "same": True,
    }

    # The installed package's own types check the usage example.
    (project / "usage.ts").write_text(EXAMPLE.read_text())
    config = json.loads((JS_DIR / "tsconfig.json").read_text())
    config.update(files=["usage.ts"], include=[])
    (project / "tsconfig.json").write_text(json.dumps(config))
    checked = tsc(node, project / "tsconfig.json")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def interface_keys(source: str, name: str) -> set[str]:
    body = source.split(f"export interface {name} {{", 1)[1].split("\n}", 1)[0]
    return set(re.findall(r"^  '?([a-z-]+)'?\??:", body, flags=re.M))


def test_declarations_name_every_message_of_the_protocol() -> None:
    """The event and message maps list exactly the types docs/protocol.md §5 and §6 define."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    section5 = doc.split("## 5. Client → server messages", 1)[1].split("## 6.", 1)[0]
    section6 = doc.split("## 6. Server → client events", 1)[1].split("### `ready`", 1)[0]
    client_messages = set(re.findall(r"^### `([a-z-]+)`", section5, flags=re.M)) - {"auth"}
    server_events = set(re.findall(r"^\| `([a-z-]+)` \|", section6, flags=re.M))
    assert len(client_messages) >= 9 and len(server_events) >= 13

    declarations = (JS_DIR / "lastra-client.d.ts").read_text()
    assert interface_keys(declarations, "ClientMessageMap") == client_messages
    assert interface_keys(declarations, "ServerEventMap") == server_events
