"""Check what the Docker image would run, without a Docker engine (``make image-check``).

The Dockerfile's build stage installs ``requirements/runtime.txt`` (hashes checked,
no dependencies resolved) and then the package; its runtime stage runs
``python -m app`` as an unprivileged user from an empty home directory with
``LASTRA_DATA_DIR=/data``. This does the same on this machine:

1. build the wheel (no build isolation: setuptools comes from the lock);
2. install the runtime lock and the wheel into a new venv outside the repository;
3. start ``python -m app`` from an empty directory as ``nobody`` (when run as
   root; otherwise as the current, already unprivileged, user), with the data
   directory in a temporary directory;
4. require: the Dockerfile's own HEALTHCHECK command passes; ``/``,
   ``/lastra-client.js``, ``/admin`` and the bundled bot personalities are served
   from the installed package; SIGTERM ends the process within 5 s.

Standard library only, so it runs under any Python the Makefile has.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
STOP_WITHIN = 5.0


def step(text: str) -> None:
    print(f"image-check: {text}", flush=True)


def fail(text: str) -> NoReturn:
    print(f"image-check: FAILED: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthcheck_argv() -> list[str]:
    """The Dockerfile's ``HEALTHCHECK ... CMD [...]``, exec form, as an argv."""
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])\s*$", text, re.M)
    if match is None:
        fail("no exec-form HEALTHCHECK CMD [...] in the Dockerfile")
    argv = json.loads(match.group(1))
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lastra-image-"))
    os.chmod(work, 0o755)  # the unprivileged user reads the venv from here
    try:
        check(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unprivileged() -> list[str]:
    """The argv prefix that runs a command as ``nobody`` (as root), or nothing."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    return [
        "setpriv",
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        "--",
    ]


def base_python(demote: list[str]) -> str:
    """A Python of the lock's minor that the unprivileged user can run.

    The image's is /usr/local/bin/python; here the developer's interpreter may
    live under a home directory that ``nobody`` cannot enter (pyenv under /root).
    """
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [
        os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        shutil.which(f"python{want}") or "",
        f"/usr/local/bin/python{want}",
        f"/usr/bin/python{want}",
    ]
    probe = f"import sys, venv; assert '%d.%d' % sys.version_info[:2] == '{want}'"
    for candidate in filter(None, candidates):
        result = subprocess.run([*demote, candidate, "-c", probe], capture_output=True)
        if result.returncode == 0:
            return candidate
    fail(f"no Python {want} that the unprivileged user can run: {candidates}")


def check(work: Path) -> None:
    dist, venv = work / "dist", work / "venv"
    demote = unprivileged()
    step("building the wheel")
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
    )
    wheels = list(dist.glob("lastra_chat-*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel, got {wheels}")
    base = base_python(demote)
    step(f"installing {wheels[0].name} from the runtime lock into a {base} venv at {venv}")
    run([base, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LASTRA_", "PYTHON"))}
    env["PIP_NO_CACHE_DIR"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    lock = str(ROOT / "requirements" / "runtime.txt")
    run([py, "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r", lock], env=env)
    run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])], env=env)
    run([py, "-m", "pip", "check"], env=env)

    home, data = work / "home", work / "data"
    home.mkdir()
    data.mkdir()
    if demote:
        nobody = pwd.getpwnam("nobody")
        for path in (home, data):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    env.update(
        {
            "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "LASTRA_HOST": "127.0.0.1",  # the image says 0.0.0.0; test traffic stays local
            "LASTRA_PORT": str(port),
            "LASTRA_DATA_DIR": str(data),
            "LASTRA_PYTHON": str(venv / "bin" / "python"),  # read by this script only
        }
    )
    step(f"starting python -m app as {'nobody' if demote else 'this user'} from {home}")
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*demote, env["LASTRA_PYTHON"], "-m", "app"], cwd=home, env=env, stdout=log, stderr=log
        )
    try:
        probe(proc, port, env, home, demote, log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def probe(
    proc: subprocess.Popen[bytes],
    port: int,
    env: dict[str, str],
    home: Path,
    demote: list[str],
    log_path: Path,
) -> None:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if get(f"{base}/healthz")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            fail(f"no /healthz within 30 s:\n{log_path.read_text()}")
        time.sleep(0.1)  # polling a process we cannot await

    where = subprocess.run(
        [*demote, env["LASTRA_PYTHON"], "-c", "import app; print(app.__file__)"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not where.startswith(str(Path(env["LASTRA_PYTHON"]).parent.parent)):
        fail(f"`import app` resolves to {where}, not to the installed package")
    step(f"app is imported from {where}")

    argv = healthcheck_argv()
    if argv[0] == "python":  # the image's PATH finds the venv's; say it outright here
        argv[0] = env["LASTRA_PYTHON"]
    health = subprocess.run([*demote, *argv], cwd=home, env=env, capture_output=True, text=True)
    if health.returncode != 0:
        fail(f"the Dockerfile's HEALTHCHECK failed: {health.stdout}{health.stderr}")
    step("the Dockerfile's HEALTHCHECK command passes")

    for path, needle in (
        ("/", b"<html"),
        ("/lastra-client.js", b"lastraclient"),
        ("/admin", b"<html"),
    ):
        status, body = get(base + path)
        if status != 200 or needle not in body.lower():
            fail(f"GET {path} -> {status}, {body[:120]!r}")
        step(f"GET {path} -> 200 ({len(body)} bytes)")
    status, body = get(f"{base}/api/bots")
    bundled = {p.stem for p in (ROOT / "app" / "bots" / "personalities").glob("*.yaml")}
    served = (
        {bot.get("name") for bot in json.loads(body).get("bots", [])} if status == 200 else set()
    )
    if status != 200 or not bundled <= served:
        fail(f"GET /api/bots -> {status}: bundled personalities {bundled}, served {served}")
    step(f"bundled bot personalities served: {sorted(served)}")

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        fail(f"still running {STOP_WITHIN} s after SIGTERM")
    step(f"SIGTERM: exited {proc.returncode} after {time.monotonic() - started:.2f} s")
    errors = [ln for ln in log_path.read_text().splitlines() if '"level":"error"' in ln]
    if errors:
        fail("errors in the server log:\n" + "\n".join(errors))
    step("passed")


if __name__ == "__main__":
    main()
