"""The one server launcher: ``python -m app`` as a subprocess on a free 127.0.0.1 port.

What is tested is exactly what an operator runs. :class:`Server` starts in one
step (``start``) or two (``launch`` + ``wait_healthy``, to start several at once).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "REDIS_URL",
    "ROOT",
    "Server",
    "free_port",
    "server_env",
]

ROOT = Path(__file__).resolve().parent.parent.parent

#: Debian's Chromium (never a browser download) and the flags it needs here: headless,
#: as root, and no background traffic to the closed network.
CHROMIUM = os.environ.get("LASTRA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running ``python -m app`` process."""

    port: int
    env: dict[str, str]
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/chat.ws"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self, timeout: float = 20.0) -> None:
        self.launch()
        self.wait_healthy(timeout)

    def launch(self) -> None:
        """Start the process; do not wait for it (``start_all`` starts several at once).

        The parent closes its copy of the log file once the child has its own: under
        ``filterwarnings = error`` an unclosed file would fail whatever test runs.
        """
        assert self.proc is None or self.proc.poll() is not None
        self.log_path = self.data_dir / f"server-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until ``/healthz`` answers 200."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=0.5, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log()}")
                try:
                    if http.get(f"{self.http}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)  # polling a process we cannot await
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """Environment for a test server: defaults that make tests fast, then overrides.

    Keys are setting names without the ``LASTRA_`` prefix.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASTRA_")}
    base = {
        "SECRET": "test-secret-not-for-production-0123456789",
        "BACKEND": "memory",
        "DATA_DIR": str(data_dir),
        "PRESENCE_BATCH": "0",
        "PRESENCE_GRACE": "0.5",
        "LOG_LEVEL": "warning",
        # every test client comes from 127.0.0.1: the per-IP session limit and the
        # per-address connection cap are tested on their own, with their own settings
        "SESSION_RATE": "1000",
        "SESSION_BURST": "100000",
        "MAX_ADDRESS_CONNECTIONS": "100000",
    }
    base.update(settings)
    env.update({f"LASTRA_{k}": str(v) for k, v in base.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


REDIS_URL = os.environ.get("LASTRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
