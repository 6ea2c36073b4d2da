"""The servers under test: how to start each one pinned to the server CPU, and watch it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
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
    "MAX_ADDRESS_CONNECTIONS": "100000",  # every bench client comes from 127.0.0.1
}

#: The Redis database the multi-process cases use; flushed before each of them.
REDIS_URL = "redis://127.0.0.1:6379/13"
LASTRA_REDIS_ENV = {**LASTRA_ENV, "BACKEND": "redis", "REDIS_URL": REDIS_URL}


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
    procs: int = 1  # server processes; the generator spreads its clients over them
    runtime: str = "python"  # python (``-m module``) | node (``bench/peers/<module>``) | nginx
    bots: str = "muted"  # Lastra: "muted" (shyness 0) or "default" (the bundled bots as shipped)
    selfpub: bool = False  # the server relays bytes (nchan): the client sends the envelope
    storm: bool = False  # the restart-storm case: connect N, SIGTERM, new process, all back

    @property
    def redis(self) -> bool:
        return self.env.get("BACKEND") == "redis"

    @property
    def late(self) -> bool:
        """Started at case start, not parked: Redis subscribers and the non-Python peers
        (nginx's and Node's processes are started in milliseconds; a stopped nginx
        would still hold its listening socket)."""
        return self.redis or self.runtime != "python"

    def wire(self, port: int, ports: list[int] | None = None) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "port": port,
            "ports": ports or [port],
            "path": self.path,
            "post_path": self.post_path,
            "sse_sep": self.sse_sep,
            "strict": self.strict,
            "selfpub": self.selfpub,
        }


#: Lastra on each transport (memory backend, bots muted); the other Lastra cases vary these.
OURS_WS = Target(
    "ours-ws",
    "Lastra WS",
    "app",
    "ws",
    "/api/chat.ws",
    strict=True,
    ours=True,
    env={**LASTRA_ENV, "TRANSPORT": "ws"},
)
OURS_SSE = replace(
    OURS_WS,
    key="ours-sse",
    label="Lastra SSE",
    proto="sse",
    path="/api/chat-stream",
    post_path="/api/chat-message",
    env={**LASTRA_ENV, "TRANSPORT": "sse"},
)

TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        Target("bare", "bare websockets", "bench.baselines.bare_ws", "ws", "/"),
        OURS_WS,
        OURS_SSE,
        replace(OURS_WS, key="ours-ws-bots", label="Lastra WS, bots on", bots="default"),
        replace(OURS_SSE, key="ours-sse-bots", label="Lastra SSE, bots on", bots="default"),
        replace(
            OURS_WS,
            key="ours-ws-redis",
            label="Lastra WS ×1 (Redis)",
            env={**LASTRA_REDIS_ENV, "TRANSPORT": "ws"},
        ),
        replace(
            OURS_WS,
            key="ours-ws-redis2",
            label="Lastra WS ×2 (Redis)",
            env={**LASTRA_REDIS_ENV, "TRANSPORT": "ws"},
            procs=2,
        ),
        replace(
            OURS_SSE,
            key="ours-sse-redis2",
            label="Lastra SSE ×2 (Redis)",
            env={**LASTRA_REDIS_ENV, "TRANSPORT": "sse"},
            procs=2,
        ),
        replace(
            OURS_WS,
            key="ours-ws-storm",
            label="Lastra WS restart storm (SQLite)",
            env={**LASTRA_ENV, "TRANSPORT": "ws", "BACKEND": "sqlite"},
            storm=True,
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
        Target("node-ws", "Node.js ws", "ws_server.js", "ws", "/", runtime="node"),
        Target(
            "nchan-ws",
            "nginx+nchan WS",
            "nchan.conf.in",
            "ws",
            "/ws",
            runtime="nginx",
            selfpub=True,
        ),
        Target(
            "nchan-sse",
            "nginx+nchan SSE",
            "nchan.conf.in",
            "sse",
            "/sse",
            post_path="/pub",
            runtime="nginx",
            selfpub=True,
        ),
    )
}
PEERS = ROOT / "bench" / "peers"
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

    @property
    def ports(self) -> list[int]:
        return [self.port]

    def launch(self, cpus: set[int] | None = None) -> Server:
        """Start the process (not waiting for it); ``cpus`` overrides the pinning for startup."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LASTRA_")}
        env.update({f"LASTRA_{k}": v for k, v in self.target.env.items()})
        if self.target.ours:
            env["LASTRA_DATA_DIR"] = str(self.data_dir)
            bots = (
                quiet_bots(self.log_path.parent / "bots") if self.target.bots == "muted" else None
            )
            if bots is not None:
                env["LASTRA_BOTS_DIR"] = str(bots)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = self.command()
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

    @property
    def data_dir(self) -> Path:
        """Lastra's data directory: kept across a restart of the same server (storm case)."""
        return self.log_path.parent / f"data-{self.port}"

    def command(self) -> list[str]:
        """The server's argv: ``python -m``, ``node bench/peers/…`` or nginx on its own prefix."""
        t = self.target
        if t.runtime == "node":
            node = shutil.which("node")
            if node is None or not (PEERS / "node_modules" / "ws").is_dir():
                raise RuntimeError("node or bench/peers/node_modules missing: make bench-peers")
            return [node, str(PEERS / t.module), "--host", "127.0.0.1", "--port", str(self.port)]
        if t.runtime == "nginx":
            return nginx_command(
                PEERS / t.module, self.log_path.parent / f"nginx-{self.port}", self.port
            )
        cmd = [sys.executable, "-m", t.module, "--host", "127.0.0.1"]
        return [*cmd, "--port", str(self.port), *self.extra]

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

    def queued(self) -> float:
        """Run-queue wait of all the server's processes (``wait_idle``'s measure)."""
        return self.waited()

    def wait_idle(self, max_s: float, below: float = 0.1, window: float = 0.1) -> float:
        """Block until the server wants less than ``below`` of a CPU for two windows.

        "Wants" is CPU time plus run-queue wait, so a server starved by a noisy
        neighbour is not mistaken for an idle one.
        """
        start = time.monotonic()
        calm = 0
        while time.monotonic() - start < max_s:
            c0, q0 = self.cpu(), self.queued()
            time.sleep(window)
            busy = (self.cpu() - c0 + self.queued() - q0) / window
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


NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")


def nginx_command(template: Path, prefix: Path, port: int) -> list[str]:
    """nginx with nchan in the foreground, one process, everything under ``prefix``.

    Not the system service: its own configuration, pid file, logs and temp
    directories, listening on 127.0.0.1 only.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or not NCHAN_MODULE.exists():
        raise RuntimeError("nginx or its nchan module missing: make bench-peers")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = template.read_text().replace("@PREFIX@", str(prefix)).replace("@PORT@", str(port))
    (prefix / "nginx.conf").write_text(conf)
    return [
        nginx,
        "-p",
        str(prefix),
        "-e",
        str(prefix / "error.log"),
        "-c",
        str(prefix / "nginx.conf"),
    ]


def flush_redis(url: str = REDIS_URL) -> None:
    """Empty the bench's Redis database (db 13), so a case starts from no history."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


class ServerGroup(Server):
    """Several processes of one target, all pinned to ``cpus``; measured as one server.

    CPU time, run-queue wait and RSS are summed over the processes; ``port`` is the
    first one's, ``ports`` all of them (the generator connects round-robin).
    """

    def __init__(self, target: Target, cpus: set[int], log_dir: Path, extra: list[str]) -> None:
        self.members = [Server(target, cpus, log_dir, extra) for _ in range(target.procs)]
        self.target = target
        self.cpus = cpus
        self.port = self.members[0].port
        self.log_path = self.members[0].log_path
        self.extra = extra
        self.proc = None
        self.ps = None

    @property
    def ports(self) -> list[int]:
        return [m.port for m in self.members]

    def launch(self, cpus: set[int] | None = None) -> Server:
        for m in self.members:
            m.launch(cpus)
        self.proc = self.members[0].proc
        self.ps = self.members[0].ps
        return self

    def wait_listening(self, timeout: float = 30.0) -> Server:
        for m in self.members:
            m.wait_listening(timeout)
        return self

    def repin(self) -> None:
        for m in self.members:
            m.repin()

    def pause(self) -> None:
        for m in self.members:
            m.pause()

    def resume(self) -> None:
        for m in self.members:
            m.resume()

    def kill(self) -> None:
        for m in self.members:
            m.kill()

    def stop(self, timeout: float = 8.0) -> None:
        for m in self.members:
            m.stop(timeout)

    def rss(self) -> int:
        return sum(m.rss() for m in self.members)

    def cpu(self) -> float:
        return sum(m.cpu() for m in self.members)

    def queued(self) -> float:
        return sum(m.waited() for m in self.members)

    def waited(self) -> float:
        """Run-queue wait that the processes did not cause each other (a lower bound).

        Processes sharing one CPU wait while a sibling runs; that is the design of
        the case, not a noisy neighbour. A process can wait for its siblings at
        most as long as they run, so ``Σ wait − (k − 1) · Σ CPU`` (differenced over
        a step, clamped at 0 by the caller) is what other load cost them at least.
        """
        shared = len(self.cpus) < len(self.members)
        extra = (len(self.members) - 1) * self.cpu() if shared else 0.0
        return self.queued() - extra

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def log_tail(self) -> str:
        return "\n".join(m.log_tail() for m in self.members if m.log_tail())
