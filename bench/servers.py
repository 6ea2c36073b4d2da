"""The servers under test: how to start each one pinned to the server CPU, and watch it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789-0123456789-abcdef"  # 42 chars; 127.0.0.1 only

#: Lastra's settings for the bench: the memory backend, the default presence
#: batch, chat rate limits out of the way (one bench user sends thousands of
#: messages per second), outbound queues that absorb a failing step's backlog,
#: and heartbeats that do not expire idle bench clients during a long run.
LASTRA_ENV = {
    "BACKEND": "memory",
    "SECRET": SECRET,
    "PRESENCE_BATCH": "0.25",
    "RATE_CHAT": "1000000",
    "RATE_CHAT_BURST": "1000000",
    "OUTBOUND_QUEUE": "16384",
    "HEARTBEAT_INTERVAL": "3000",
    "HEARTBEAT_TIMEOUT": "3600",
    "LOG_LEVEL": "warning",
}


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    module: str
    proto: str  # ws | sio | sse
    path: str
    post_path: str = ""
    sse_sep: str = "\n\n"
    strict: bool = False  # check seq from ready/history on (Lastra only)
    ours: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def wire(self, port: int) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "port": port,
            "path": self.path,
            "post_path": self.post_path,
            "sse_sep": self.sse_sep,
            "strict": self.strict,
        }


TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        Target("bare", "bare websockets", "bench.baselines.bare_ws", "ws", "/"),
        Target(
            "ours-ws",
            "Lastra WS",
            "app",
            "ws",
            "/api/chat.ws",
            strict=True,
            ours=True,
            env={**LASTRA_ENV, "TRANSPORT": "ws"},
        ),
        Target(
            "ours-sse",
            "Lastra SSE",
            "app",
            "sse",
            "/api/chat-stream",
            post_path="/api/chat-message",
            strict=True,
            ours=True,
            env={**LASTRA_ENV, "TRANSPORT": "sse"},
        ),
        Target("fastapi", "FastAPI naive loop", "bench.baselines.fastapi_naive", "ws", "/ws"),
        Target(
            "socketio",
            "python-socketio",
            "bench.baselines.socketio_app",
            "sio",
            "/socket.io/?EIO=4&transport=websocket",
        ),
        Target(
            "sse-naive",
            "naive SSE (sse-starlette)",
            "bench.baselines.sse_naive",
            "sse",
            "/stream",
            post_path="/chat",
            sse_sep="\r\n\r\n",
        ),
    )
}
CEILING = Target("ceiling", "generator ceiling (blaster)", "bench.baselines.blaster", "ws", "/")


def sched_wait(pid: int) -> float:
    """Run-queue wait of every thread of ``pid`` in seconds (``/proc/*/schedstat``)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{pid}/task/{tid}/schedstat") as f,
        ):
            total += int(f.read().split()[1])
    return total / 1e9


def quiet_bots(dest: Path) -> Path | None:
    """Lastra's bundled bot personalities with ``shyness: 0``.

    The bots stay in the loop (every message passes through their triggers), but
    none interjects at random: a bench message must cost the same on every run.
    """
    bundled = ROOT / "app" / "bots" / "personalities"
    files = sorted(bundled.glob("*.y*ml")) if bundled.is_dir() else []
    if not files:
        return None
    if dest.is_dir() and any(dest.iterdir()):
        return dest  # written once per run
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        lines = [
            "shyness: 0" if line.startswith("shyness:") else line
            for line in path.read_text(encoding="utf-8").splitlines()
        ]
        (dest / path.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NICE = {"value": 0}  # set by ``--nice``: applied to servers, generators and py-spy


def pin(cpus: set[int]) -> Any:
    """``preexec_fn``: pin the child to ``cpus``, renice it, have it die with the coordinator."""

    def _pin() -> None:
        if cpus and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus)
        if NICE["value"]:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, NICE["value"])
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return _pin


class Server:
    """One server process on 127.0.0.1, pinned to ``cpus``."""

    def __init__(self, target: Target, cpus: set[int], log_dir: Path, extra: list[str]) -> None:
        self.target = target
        self.cpus = cpus
        self.port = free_port()
        self.log_path = log_dir / f"server-{target.key}-{self.port}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    def launch(self, cpus: set[int] | None = None) -> Server:
        """Start the process (not waiting for it); ``cpus`` overrides the pinning for startup."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LASTRA_")}
        env.update({f"LASTRA_{k}": v for k, v in self.target.env.items()})
        if self.target.ours:
            env["LASTRA_DATA_DIR"] = str(self.log_path.parent / f"data-{self.port}")
            bots = quiet_bots(self.log_path.parent / "bots")
            if bots is not None:
                env["LASTRA_BOTS_DIR"] = str(bots)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", self.target.module, "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), *self.extra]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=pin(self.cpus if cpus is None else cpus),
            )
        self.ps = psutil.Process(self.proc.pid)
        return self

    def wait_listening(self, timeout: float = 30.0) -> Server:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target.key} exited early:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.target.key} did not listen in {timeout} s:\n{self.log_tail()}")

    def start(self, timeout: float = 30.0) -> Server:
        return self.launch().wait_listening(timeout)

    def repin(self) -> None:
        """Pin every thread of the running server to the server CPUs."""
        if not self.cpus or self.proc is None:
            return
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), self.cpus)

    def pause(self) -> None:
        """SIGSTOP: a parked server costs nothing while the others are measured."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    def cpu(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def waited(self) -> float:
        """Seconds this server spent runnable but waiting for a CPU (all threads)."""
        return sched_wait(self.pid)

    def wait_idle(self, max_s: float, below: float = 0.1, window: float = 0.1) -> float:
        """Block until the server wants less than ``below`` of a CPU for two windows.

        "Wants" is CPU time plus run-queue wait, so a server starved by a noisy
        neighbour is not mistaken for an idle one.
        """
        start = time.monotonic()
        calm = 0
        while time.monotonic() - start < max_s:
            c0, q0 = self.cpu(), self.waited()
            time.sleep(window)
            busy = (self.cpu() - c0 + self.waited() - q0) / window
            calm = calm + 1 if busy < below else 0
            if calm >= 2:
                break
        return time.monotonic() - start

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 8.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
