"""The benchmark: ``python -m bench.run --quick|--full`` (``make bench-quick`` / ``make bench``).

For every N and every server (Lastra on both transports, Lastra on Redis with
one and two processes at ``Mode.redis_ns``, and the four baselines), on fresh
server processes pinned to CPU 0 with the generator on the other CPU(s):

1. connect N clients (at most ``concurrency`` handshakes in flight): setup
   time p50/p99 and time to connect all; server RSS per idle connection;
2. ramp the offered fan-out load (deliveries/s = chat messages/s × N) until
   p99 end-to-end latency passes 250 ms; the highest step that holds is the
   figure, with its p50/p99, server CPU seconds per 100k deliveries and bytes
   on the wire per delivered chat message;
3. (Lastra, ``--profile``) record py-spy on the server at that step;
4. pause reading on one client and measure the others' deliveries/s at the
   same load;
5. check ``seq`` on every client (Lastra: no gap, no duplicate, everyone at
   the same last seq).

See ``bench/README.md`` for the method and its limits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jwt
import numpy as np
import psutil

from .gen import worker_main
from .servers import (
    CEILING,
    NICE,
    ROOT,
    SECRET,
    TARGETS,
    Server,
    ServerGroup,
    Target,
    flush_redis,
    pin,
    sched_wait,
)

HOLD_P99_MS = 250.0
STARVED_PCT = 5.0  # run-queue wait above this share of a step: the step was disturbed


@dataclass
class Mode:
    name: str
    ns: list[int]
    step_s: float  # length of one ramp step (sending window)
    start_level: float  # first offered load, deliveries/s
    factor: float  # ramp multiplier while steps hold
    refine: int  # geometric bisections between the last hold and the first failure
    retry_starved: bool  # re-run once a failing step during which the server was starved
    max_level: float
    settle_s: float  # idle time after connecting, before RSS
    connect_concurrency: int
    connect_timeout: float  # per connection
    connect_phase_s: float  # the whole connect phase
    quiet_s: float  # a collect stops after this long without a new delivery
    drain_s: float  # longest wait for a backlog to clear
    stall_fill_bytes: int  # bytes pushed at the stalled client before measuring
    stall_fill_cap_s: float
    stall_measure_s: float
    stall_ns: list[int]  # the N at which the stalled-reader test runs
    ceiling_s: float
    profile_s: float
    senders: int  # WebSocket clients that send (total)
    posters: int  # keep-alive POST connections (SSE targets, total)
    max_life: float  # hard bound on every generator process
    redis_ns: list[int]  # the N at which the Redis cases (one and two processes) run


MODES = {
    "quick": Mode(
        name="quick",
        ns=[100, 1000],
        step_s=0.4,
        start_level=40_000,
        factor=2.0,
        refine=1,
        retry_starved=False,
        max_level=2_000_000,
        settle_s=0.3,
        connect_concurrency=256,
        connect_timeout=20,
        connect_phase_s=45,
        quiet_s=0.4,
        drain_s=8,
        stall_fill_bytes=160_000,
        stall_fill_cap_s=1.0,
        stall_measure_s=0.4,
        stall_ns=[100],
        ceiling_s=0.7,
        profile_s=1.5,
        senders=8,
        posters=64,
        max_life=600,
        redis_ns=[100],
    ),
    "full": Mode(
        name="full",
        ns=[100, 1000, 5000],
        step_s=2.5,
        start_level=20_000,
        factor=2.0,
        refine=2,
        retry_starved=True,
        max_level=2_000_000,
        settle_s=2.0,
        connect_concurrency=256,
        connect_timeout=60,
        connect_phase_s=150,
        quiet_s=1.0,
        drain_s=30,
        stall_fill_bytes=240_000,
        stall_fill_cap_s=12,
        stall_measure_s=2.5,
        stall_ns=[100, 1000, 5000],
        ceiling_s=2.5,
        profile_s=8.0,
        senders=8,
        posters=64,
        max_life=3000,
        redis_ns=[100, 1000],
    ),
}


# ----------------------------------------------------------------- generator pool


class Gen:
    """The generator processes, pinned to ``cpus``; each owns a slice of the clients."""

    def __init__(self, procs: int, cpus: list[int], max_life: float, nice: int = 0) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for wid in range(procs):
            here, there = ctx.Pipe()
            p = ctx.Process(
                target=worker_main, args=(wid, there, cpus, max_life, nice), daemon=True
            )
            p.start()
            self.pipes.append(here)
            self.procs.append(p)
        self.ps = [psutil.Process(p.pid) for p in self.procs]

    @property
    def size(self) -> int:
        return len(self.pipes)

    def call(
        self, name: str, timeout: float, kwargs: list[dict[str, Any]] | dict[str, Any]
    ) -> list[dict[str, Any]]:
        each = kwargs if isinstance(kwargs, list) else [kwargs] * self.size
        for pipe, kw in zip(self.pipes, each, strict=True):
            pipe.send((name, kw))
        out = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"generator did not answer {name!r} in {timeout:.0f} s")
            reply = pipe.recv()
            if not reply.get("ok"):
                raise RuntimeError(f"generator {name}: {reply.get('error')}")
            out.append(reply)
        return out

    def waited(self) -> float:
        return sum(sched_wait(p.pid) for p in self.ps)

    def cpu(self) -> float:
        total = 0.0
        for p in self.ps:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("quit", {}))
        for p in self.procs:
            p.join(3)
            if p.is_alive():
                p.terminate()
                p.join(2)


# ----------------------------------------------------------------------- helpers


def tokens(n: int, base: int = 0) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {"sub": f"u_bench{i}", "name": f"b{i}", "iat": now, "exp": now + 86400},
            SECRET,
            algorithm="HS256",
        )
        for i in range(base, base + n)
    ]


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.inf


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Case:
    """One server × one N: connect, idle memory, ramp, profile, stall, seq check."""

    def __init__(self, run: Runner, target: Target, n: int, server: Server) -> None:
        self.run = run
        self.mode = run.mode
        self.gen = run.gen
        self.target = target
        self.n = n
        self.server = server
        self.step_id = 0
        self.steps: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {"target": target.key, "label": target.label, "n": n}

    # -- phases -------------------------------------------------------------------

    def connect(self) -> None:
        mode, gen, n = self.mode, self.gen, self.n
        toks = self.run.tokens[:n]
        per: list[list[tuple[int, str, bool]]] = [[] for _ in range(gen.size)]
        for i, tok in enumerate(toks):
            per[i % gen.size].append((i, tok, False))
        # the would-be stalled client: last of worker 0, never a sender
        if len(per[0]) > 1:
            idx, tok, _ = per[0][-1]
            per[0][-1] = (idx, tok, True)
        # warm-up: a few throwaway connections so first-connection costs are not per-connection
        warm = [
            {
                "specs": [],
                "concurrency": 4,
                "timeout": 10,
                "senders": 0,
                "posters": 0,
                "warmup": True,
            }
        ] * gen.size
        warm[0] = {
            **warm[0],
            "specs": [(n + i, t, False) for i, t in enumerate(self.run.warm_tokens)],
        }
        gen.call("connect", 30, warm)
        time.sleep(0.3)
        self.server.wait_idle(3)
        rss0 = self.server.rss()
        conc = max(1, mode.connect_concurrency // gen.size)
        senders = max(1, math.ceil(mode.senders / gen.size))
        posters = max(1, math.ceil(mode.posters / gen.size))
        budget = mode.connect_phase_s + mode.connect_timeout + 30
        replies = gen.call(
            "connect",
            budget,
            [
                {
                    "specs": per[w],
                    "concurrency": conc,
                    "timeout": mode.connect_timeout,
                    "senders": senders,
                    "posters": posters,
                    "phase_timeout": mode.connect_phase_s,
                }
                for w in range(gen.size)
            ],
        )
        times = np.array([t for r in replies for t in r["times_ms"]])
        errors: dict[str, int] = {}
        for r in replies:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        firsts = [r["t_first"] for r in replies if r["t_first"]]
        lasts = [r["t_last"] for r in replies if r["t_last"]]
        t_all = (max(lasts) - min(firsts)) / 1e9 if firsts and lasts else math.inf
        time.sleep(mode.settle_s)
        self.server.wait_idle(mode.drain_s)
        rss1 = self.server.rss()
        self.connected = int(times.size)
        if not self.connected:
            raise RuntimeError(f"no client connected: {errors}")
        self.result.update(
            connected=int(times.size),
            connect_errors=errors,
            connect_p50_ms=pct(times, 50),
            connect_p99_ms=pct(times, 99),
            connect_all_s=t_all,
            rss_base=rss0,
            rss_idle=rss1,
            rss_per_conn_kb=(rss1 - rss0) / max(1, times.size) / 1024,
            posters=sum(r["posters"] for r in replies),
        )
        log(
            f"  {self.target.key:9} N={n}: {times.size} connected in {t_all:.2f} s "
            f"(p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms), "
            f"{self.result['rss_per_conn_kb']:.1f} KB/conn"
            + (f", errors {errors}" if errors else "")
        )

    def step(
        self, level: float, *, kind: str = "ramp", duration: float | None = None
    ) -> dict[str, Any]:
        """Offer ``level`` deliveries/s for one step; measure what came back."""
        mode, gen, srv = self.mode, self.gen, self.server
        self.step_id += 1
        sid = self.step_id
        receivers_n = max(1, self.connected)
        rate = level / receivers_n  # chat messages per second, all senders together
        dur = duration or max(mode.step_s, min(4 * mode.step_s, 3.0 / rate))
        cpu_s0, cpu_g0 = srv.cpu(), gen.cpu()
        wait_s0, wait_g0 = srv.waited(), gen.waited()
        w0 = time.monotonic()
        sent_r = gen.call("step", dur + 10, {"step": sid, "rate": rate / gen.size, "duration": dur})
        sent = sum(r["sent"] for r in sent_r)
        planned = sum(r["planned"] for r in sent_r)
        window = planned / rate  # the nominal time the planned messages cover
        col = gen.call(
            "collect",
            mode.drain_s + 10,
            {"step": sid, "expected_each": sent, "timeout": mode.drain_s, "quiet": mode.quiet_s},
        )
        wall = time.monotonic() - w0
        cpu_s1, cpu_g1 = srv.cpu(), gen.cpu()
        wait_s1, wait_g1 = srv.waited(), gen.waited()
        lat = np.concatenate([np.frombuffer(c["lat"], dtype=np.int64) for c in col]) / 1000.0
        delivered = int(sum(c["count"] for c in col))
        receivers = int(sum(c["receivers"] for c in col))
        expected = sent * receivers
        nbytes = int(sum(c["nbytes"] for c in col))
        server_cpu = cpu_s1 - cpu_s0
        closed = int(sum(c["closed"] for c in col))
        rec: dict[str, Any] = {
            "step": sid,
            "kind": kind,
            "level": level,
            "rate": rate,
            "duration": dur,
            "window": window,
            "sent": sent,
            "planned": planned,
            "send_ratio": sent / max(1, planned),
            "receivers": receivers,
            "delivered": delivered,
            "expected": expected,
            "deliveries_per_s": delivered / window if window > 0 else 0.0,
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "max_ms": float(lat.max()) if lat.size else math.inf,
            "server_cpu_s": server_cpu,
            "server_cpu_pct": 100 * server_cpu / wall,
            "gen_cpu_pct": 100 * (cpu_g1 - cpu_g0) / wall,
            # share of the step the process was runnable but waiting for its CPU:
            # anything above a few % means a noisy neighbour, not our load
            "server_wait_pct": max(0.0, 100 * (wait_s1 - wait_s0) / wall),
            "gen_wait_pct": 100 * (wait_g1 - wait_g0) / wall,
            "cpu_s_per_100k": server_cpu / delivered * 1e5 if delivered else math.inf,
            "bytes": nbytes,
            "bytes_per_delivery": nbytes / delivered if delivered else math.inf,
            "closed": closed,
            "close_codes": _merge(c["close_codes"] for c in col),
            "errors": _merge(c["errors"] for c in col),
            "post_status": _merge(c["post_status"] for c in col),
        }
        rec["holds"] = bool(
            sent > 0
            and rec["p99_ms"] <= HOLD_P99_MS
            and delivered >= 0.999 * expected
            and rec["send_ratio"] >= 0.95
            and closed <= self.closed_before
        )
        self.closed_before = closed
        if self.target.ours and closed >= max(1, self.connected // 2):
            rec["reconnected"] = closed  # e.g. Redis resync: 1012 to everyone
        self.steps.append(rec)
        log(
            f"    {kind:7} {level / 1000:8.1f}k/s offered ({rate:8.1f} msg/s): "
            f"{rec['deliveries_per_s'] / 1000:8.1f}k/s p50 "
            f"{rec['p50_ms']:7.1f} p99 {rec['p99_ms']:7.1f} ms "
            f"srv {rec['server_cpu_pct']:3.0f}% gen {rec['gen_cpu_pct']:3.0f}% "
            f"{'HOLDS' if rec['holds'] else 'fails'}"
            + (f" [sent {rec['send_ratio']:.2f}]" if rec["send_ratio"] < 0.95 else "")
            + (f" [late {expected - delivered}]" if delivered < expected else "")
            + (
                f" [starved srv {rec['server_wait_pct']:.0f}% gen {rec['gen_wait_pct']:.0f}%]"
                if max(rec["server_wait_pct"], rec["gen_wait_pct"]) > STARVED_PCT
                else ""
            )
            + (f" [closed {closed}]" if closed else "")
        )
        if not rec["holds"]:
            srv.wait_idle(mode.drain_s)
        if rec.get("reconnected"):
            self.reconnect(rec["close_codes"])
        return rec

    def reconnect(self, codes: dict[str, int]) -> None:
        """The server closed (most of) the clients: connect N afresh and go on.

        Lastra closes everyone with 1012 when its Redis stream was trimmed past
        what a process had read (it fell behind under overload): the clients are
        to resync. The step that caused it fails; the ramp continues with new
        clients, and the report counts the reconnections.
        """
        gen, mode = self.gen, self.mode
        log(f"    server closed the clients ({codes}): reconnecting {self.n}")
        gen.call("close", 30, {})
        self.server.wait_idle(mode.drain_s)
        per: list[list[tuple[int, str, bool]]] = [[] for _ in range(gen.size)]
        for i, tok in enumerate(self.run.tokens[: self.n]):
            per[i % gen.size].append((i, tok, False))
        if len(per[0]) > 1:
            idx, tok, _ = per[0][-1]
            per[0][-1] = (idx, tok, True)
        replies = gen.call(
            "connect",
            mode.connect_phase_s + mode.connect_timeout + 30,
            [
                {
                    "specs": per[w],
                    "concurrency": max(1, mode.connect_concurrency // gen.size),
                    "timeout": mode.connect_timeout,
                    "senders": max(1, math.ceil(mode.senders / gen.size)),
                    "posters": max(1, math.ceil(mode.posters / gen.size)),
                    "phase_timeout": mode.connect_phase_s,
                }
                for w in range(gen.size)
            ],
        )
        self.connected = max(1, sum(len(r["times_ms"]) for r in replies))
        self.closed_before = 0
        self.result.setdefault("reconnects", []).append(
            {"codes": codes, "connected": self.connected}
        )
        self.server.wait_idle(mode.drain_s)

    def ramp_step(self, level: float) -> dict[str, Any]:
        """A ramp step; one that failed while starved by other load is tried once more."""
        rec = self.step(level)
        if not rec["holds"] and _starved(rec) and self.mode.retry_starved:
            rec["kind"] = "retried"
            rec = self.step(level)
        return rec

    def ramp(self) -> dict[str, Any] | None:
        mode = self.mode
        floor = float(max(1, self.connected))  # 1 chat message per second
        level = max(mode.start_level, floor)
        self.closed_before = 0
        lo: dict[str, Any] | None = None
        hi: float | None = None
        if self.ramp_step(level)["holds"]:
            lo = self.steps[-1]
            while level * mode.factor <= mode.max_level:
                level *= mode.factor
                if self.ramp_step(level)["holds"]:
                    lo = self.steps[-1]
                else:
                    hi = level
                    break
        else:
            hi = level
            while hi / 2 >= floor * 0.999:
                level = hi / 2
                if self.ramp_step(level)["holds"]:
                    lo = self.steps[-1]
                    break
                hi = level
        if lo is not None and hi is not None:
            for _ in range(mode.refine):
                mid = math.sqrt(lo["level"] * hi)
                if self.ramp_step(mid)["holds"]:
                    lo = self.steps[-1]
                else:
                    hi = mid
        return lo

    def profile(self, level: float) -> dict[str, Any] | None:
        """py-spy on the server for one step at ``level`` (raw collapsed stacks)."""
        out = self.run.out_dir / f"profile-{self.target.key}-{self.n}.txt"
        raw = self.run.log_dir / f"pyspy-{self.target.key}-{self.n}.raw"
        pyspy = Path(sys.executable).with_name("py-spy")
        if not pyspy.exists():
            log("    py-spy not installed in the venv: no profile (pip install py-spy)")
            return None
        dur = self.mode.profile_s
        cmd = [str(pyspy), "record", "--pid", str(self.server.pid), "--duration", str(int(dur + 1))]
        cmd += ["--rate", "200", "--format", "raw", "--function", "--nonblocking", "-o", str(raw)]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=pin(set(self.run.gen_cpus)),
        )
        time.sleep(0.3)
        rec = self.step(level, kind="profile", duration=dur)
        try:
            _, err = proc.communicate(timeout=dur + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return None
        if proc.returncode != 0 or not raw.exists():
            log(f"    py-spy failed: {err.decode(errors='replace')[-300:]}")
            return None
        summary = summarize_profile(raw.read_text(), rec, self.target.label, self.n)
        out.write_text(summary["text"])
        log(f"    profile → {out}")
        return {k: v for k, v in summary.items() if k != "text"} | {"file": out.name}

    def stall(self, level: float, knee: dict[str, Any] | None) -> dict[str, Any]:
        """One client stops reading; measure the others at the same offered load."""
        mode, gen = self.mode, self.gen
        per_client_bps = (knee["bytes_per_delivery"] if knee else 300.0) * (
            level / max(1, self.connected)
        )
        fill_s = min(
            mode.stall_fill_cap_s, max(0.3, mode.stall_fill_bytes / max(1.0, per_client_bps))
        )
        r = gen.call("stall", 30, [{"pause": True}] + [{"pause": False}] * (gen.size - 1))
        if not r[0].get("stalled"):
            return {"skipped": "no stalled client"}
        reopened = int(r[0].get("reopened", 0))
        fill = self.step(level, kind="fill", duration=fill_s)
        meas = self.step(level, kind="stalled", duration=mode.stall_measure_s)
        if _starved(meas) and mode.retry_starved:
            meas["kind"] = "retried"
            meas = self.step(level, kind="stalled", duration=mode.stall_measure_s)
        gen.call("stall", 10, [{"pause": False}] + [{"pause": False}] * (gen.size - 1))
        self.server.wait_idle(mode.drain_s)
        offered = meas["rate"] * meas["receivers"]  # deliveries/s the others should get
        others = meas["delivered"] / meas["window"] if meas["window"] else 0.0
        return {
            "level": level,
            "fill_s": fill["window"],
            "pushed_bytes": per_client_bps * (fill["window"] + meas["window"]),
            "others_per_s": others,
            "offered_per_s": offered,
            "cut": max(0.0, 1 - others / offered) if offered else 1.0,
            "p99_ms": meas["p99_ms"],
            "holds": meas["holds"],
            "closed": meas["closed"],
            "close_codes": meas["close_codes"],
            "starved": _starved(meas),
            "reopened": reopened,
        }

    def storm(self) -> dict[str, Any]:
        """SIGTERM with N clients connected, a new process on the same port and data:
        how long until every client is back with ``recovered: true`` and presence is whole.

        The clients come back as the bundled client does (:class:`bench.gen.Storm`: after
        the 1012, 3 attempts within 1 s, then the doubling backoff; resuming with
        ``lastSeq`` + ``epoch``); the clock starts at the SIGTERM.
        """
        srv = self.server
        self._storm_call("storm_arm", 10, {"users": self.connected})
        assert srv.proc is not None
        cpu0 = srv.cpu()
        t0 = time.monotonic_ns()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(60)
        except subprocess.TimeoutExpired:
            srv.kill()
        t_exit = time.monotonic_ns()
        srv.launch()  # same port, same data directory, pinned like the first
        srv.wait_listening(60)
        t_listen = time.monotonic_ns()
        replies = self._storm_call("storm_wait", 130, {"timeout": 120})
        cpu1 = srv.cpu()
        r = _merge_storm(replies)

        def s(t: int) -> float | None:
            return (t - t0) / 1e9 if t else None

        ready = np.sort((np.array(r["t_ready"], dtype=np.int64) - t0) / 1e9)

        out = {
            "n": self.connected,
            "closed": r["closed"],
            "back": r["back"],
            "recovered": r["recovered"],
            "exit_s": s(t_exit),
            "listen_s": s(t_listen),
            "first_close_s": s(r["t_first_close"]),
            "all_ready_s": s(r["t_last_ready"]),
            # when the clients were back: the crowd (p50) against the backoff's tail (p99)
            "ready_p50_s": float(np.quantile(ready, 0.5)) if ready.size else None,
            "ready_p90_s": float(np.quantile(ready, 0.9)) if ready.size else None,
            "ready_p99_s": float(np.quantile(ready, 0.99)) if ready.size else None,
            "ready_by_3s": int(np.searchsorted(ready, 3.0, side="right")),
            "converged_s": s(r["t_converged"]),
            "back_s": max(s(r["t_last_ready"]) or math.inf, s(r["t_converged"]) or math.inf),
            "new_process_cpu_s": cpu1,
            "old_process_cpu_s": cpu0,
            "attempts": r["attempts"],
            "failures": r["failures"],
            # per reason, when the failed attempts happened (first, last; s from the SIGTERM)
            "failed_when": {k: [s(a), s(b)] for k, (a, b) in r["failed_when"].items()},
            "gave_up": r["gave_up"],
            "close_codes": r["close_codes"],
            "observer_users": r["observer_users"],
        }
        out["after_listen_s"] = out["back_s"] - (out["listen_s"] or 0)
        log(
            f"  storm: exit {out['exit_s']:.2f} s, listening {out['listen_s']:.2f} s, "
            f"{r['back']}/{r['closed']} back ({r['recovered']} recovered) at "
            f"{out['all_ready_s'] or math.inf:.2f} s ({out['ready_by_3s']} by 3 s), presence "
            f"whole at {out['converged_s'] or math.inf:.2f} s; attempts {r['attempts']}, "
            f"failed attempts {r['failures']}"
            + (f", {r['gave_up']} gave up" if r["gave_up"] else "")
        )
        return out

    def _storm_call(self, name: str, timeout: float, kwargs: dict[str, Any]) -> list[Any]:
        """``gen.call``, naming a generator process that died: a broken pipe alone does not
        say why (a crash inside a command comes back as its own error, not as this)."""
        try:
            return self.gen.call(name, timeout, kwargs)
        except (BrokenPipeError, EOFError) as exc:
            for p in self.gen.procs:
                p.join(1)
            codes = [p.exitcode for p in self.gen.procs]
            raise RuntimeError(
                f"generator process gone at the storm's {name!r} ({type(exc).__name__}; exit "
                f"codes {codes}: -n = killed by signal n, 0 = it lost its pipe)"
            ) from exc

    def check(self) -> dict[str, Any]:
        """seq on every client; polls until stragglers stop catching up (bounded)."""
        self.server.wait_idle(self.mode.drain_s)
        deadline = time.monotonic() + self.mode.drain_s
        previous = None
        while True:
            replies = self.gen.call("check", 30, {})
            rows = [row for r in replies for row in r["rows"]]
            healthy = [r for r in rows if not r[3] and not r[4]]
            lasts = [r[0] for r in healthy if r[0] is not None]
            top = max(lasts) if lasts else None
            behind = sum(1 for r in healthy if r[0] is None or (top is not None and r[0] < top))
            snapshot = [r[0] for r in healthy]
            if not behind or snapshot == previous or time.monotonic() > deadline:
                break
            previous = snapshot
            time.sleep(0.3)
        return {
            "clients": len(rows),
            "checked": len(healthy),
            "gaps": int(sum(r[1] for r in healthy)),
            "dups": int(sum(r[2] for r in healthy)),
            "clients_with_gaps": sum(1 for r in healthy if r[1]),
            "behind": behind,
            "last_seq": top,
            "closed": sum(1 for r in rows if r[3]),
            "close_codes": _merge(r["close_codes"] for r in replies),
            "errors": _merge(r["errors"] for r in replies),
        }

    # -- the whole case -----------------------------------------------------------

    def execute(self, profile: bool) -> dict[str, Any]:
        t0 = time.monotonic()
        if self.target.late:
            # Redis: a fresh, empty db 13 and fresh processes, started only now, so that
            # no parked process holds a Redis subscription during the other cases.
            # Node and nginx: started now too (milliseconds), never parked.
            if self.target.redis:
                flush_redis()
            self.server.launch(cpus=set())
            self.server.wait_listening(90)
            self.server.repin()
            if self.target.redis:
                time.sleep(0.5)  # the processes find each other (node registry)
        self.server.wait_listening()
        self.server.resume()
        try:
            wire = self.run.wire(self.target, self.server.port, self.server.ports)
            self.gen.call("setup", 30, {"target": wire})
            self.connect()
            if self.target.storm:
                self.result["storm"] = self.storm()
                self.result["seq"] = self.check()
                self.result["server_alive"] = self.server.alive()
                self.result["seconds"] = time.monotonic() - t0
                return self.result
            knee = self.ramp()
            self.result["knee"] = knee
            self.result["none_p99_ms"] = None if knee else min(s["p99_ms"] for s in self.steps)
            level = knee["level"] if knee else float(max(1, self.connected))
            if profile and knee:
                self.result["profile"] = self.profile(level)
            if self.n in self.mode.stall_ns:
                self.result["stall"] = self.stall(level, knee)
            self.result["seq"] = self.check()
            self.result["server_alive"] = self.server.alive()
        finally:
            with contextlib.suppress(Exception):
                self.gen.call("close", 30, {})
            self.server.kill()  # nothing to learn from a graceful stop; free CPU 0 at once
        self.result["steps"] = self.steps
        self.result["seconds"] = time.monotonic() - t0
        return self.result


def _merge_storm(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """The storm's figures over every generator process (the observer is in the first)."""
    firsts = [r["t_first_close"] for r in replies if r["t_first_close"]]
    attempts = _merge(r["attempts"] for r in replies)  # the attempt that succeeded: clients
    return {
        "closed": sum(r["closed"] for r in replies),
        "back": sum(r["back"] for r in replies),
        "recovered": sum(r["recovered"] for r in replies),
        "gave_up": sum(r["gave_up"] for r in replies),
        "t_first_close": min(firsts) if firsts else 0,
        "t_last_ready": max(r["t_last_ready"] for r in replies),
        "t_ready": [t for r in replies for t in r["t_ready"]],
        "t_converged": replies[0]["t_converged"],
        "observer_users": replies[0]["observer_users"],
        "attempts": dict(sorted(attempts.items(), key=lambda kv: int(kv[0]))),
        "failures": _merge(r["failures"] for r in replies),
        "failed_when": {
            k: (
                min(r["failed_when"][k][0] for r in replies if k in r["failed_when"]),
                max(r["failed_when"][k][1] for r in replies if k in r["failed_when"]),
            )
            for k in {k for r in replies for k in r["failed_when"]}
        },
        "close_codes": _merge(r["close_codes"] for r in replies),
    }


def _starved(rec: dict[str, Any]) -> bool:
    """The server or the generator waited for its CPU during this step (noisy neighbour)."""
    return max(rec["server_wait_pct"], rec["gen_wait_pct"]) > STARVED_PCT


def _merge(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[str(k)] = out.get(str(k), 0) + int(v)
    return out


def summarize_profile(raw: str, rec: dict[str, Any], label: str, n: int) -> dict[str, Any]:
    """Top self and inclusive functions from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    top_self = sorted(own.items(), key=lambda kv: -kv[1])[:25]
    top_incl = sorted(incl.items(), key=lambda kv: -kv[1])[:40]
    lines = [
        f"py-spy profile of {label} at N={n}, offered {rec['level']:.0f} deliveries/s "
        f"({rec['rate']:.1f} msg/s) for {rec['window']:.1f} s",
        f"measured during the profile: {rec['deliveries_per_s']:.0f} deliveries/s, "
        f"p50 {rec['p50_ms']:.1f} ms, p99 {rec['p99_ms']:.1f} "
        f"ms, server CPU {rec['server_cpu_pct']:.0f}%",
        f"{total} samples at 200 Hz (idle samples excluded)",
        "",
        "== self time (leaf frames) ==",
    ]
    lines += [f"{100 * c / max(1, total):6.1f}%  {f}" for f, c in top_self]
    lines += ["", "== inclusive time =="]
    lines += [f"{100 * c / max(1, total):6.1f}%  {f}" for f, c in top_incl]
    return {
        "text": "\n".join(lines) + "\n",
        "samples": total,
        "top_self": [(f, c / max(1, total)) for f, c in top_self[:12]],
        "top_incl": [(f, c / max(1, total)) for f, c in top_incl[:25]],
    }


# ------------------------------------------------------------------------ runner


class Runner:
    def __init__(self, mode: Mode, args: argparse.Namespace) -> None:
        self.mode = mode
        self.args = args
        ncpu = os.cpu_count() or 1
        if ncpu >= 2:
            self.server_cpus = {0}
            self.gen_cpus = list(range(1, ncpu))
        else:
            self.server_cpus = set()
            self.gen_cpus = []
        self.out_dir = Path(args.out).resolve() / mode.name
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(tempfile.mkdtemp(prefix="lastra-bench-"))
        procs = args.gen_procs or 1
        self.gen = Gen(procs, self.gen_cpus, mode.max_life, args.nice)
        self.tokens = tokens(max(args.ns))
        self.warm_tokens = tokens(4, base=10_000_000)
        self.ceiling_server = Server(
            CEILING, self.server_cpus, self.log_dir, ["--seconds", str(mode.ceiling_s)]
        )
        # the Redis cases: every process pinned to the server CPU(s), i.e. both on CPU 0
        self.servers = {
            (key, n): (ServerGroup if TARGETS[key].procs > 1 else Server)(
                TARGETS[key], self.server_cpus, self.log_dir, []
            )
            for n in args.ns
            for key in args.targets
            if not TARGETS[key].redis or n in mode.redis_ns
        }

    def wire(self, target: Target, port: int, ports: list[int] | None = None) -> dict[str, Any]:
        return {**target.wire(port, ports), "coalesce_ms": self.args.coalesce_ms}

    def launch_all(self) -> None:
        """Start every server at once (on all CPUs), then pin them to CPU 0 and park them.

        Each case gets a fresh process, but nobody waits for imports between cases.
        """
        every = [self.ceiling_server] + [
            s
            for s in self.servers.values()
            if not s.target.late  # Redis, Node, nginx: at case start
        ]
        for server in every:
            server.launch(cpus=set())
        for server in every:
            server.wait_listening(90)
            server.repin()
            server.pause()

    def kill_all(self) -> None:
        for server in [self.ceiling_server, *self.servers.values()]:
            server.kill()

    def ceiling(self) -> dict[str, Any]:
        """How many deliveries/s the generator itself can parse (blaster server)."""
        n = 100
        server = self.ceiling_server
        server.wait_listening()
        server.resume()
        try:
            self.gen.call("setup", 30, {"target": self.wire(CEILING, server.port)})
            per = [
                [(i, t, False) for i, t in enumerate(self.tokens[:n]) if i % self.gen.size == w]
                for w in range(self.gen.size)
            ]
            self.gen.call(
                "connect",
                60,
                [
                    {
                        "specs": p,
                        "concurrency": 64,
                        "timeout": 10,
                        "senders": 1 if w == 0 else 0,
                        "posters": 0,
                    }
                    for w, p in enumerate(per)
                ],
            )
            g0, s0 = self.gen.cpu(), server.cpu()
            self.gen.call(
                "step",
                10,
                [{"step": 1, "rate": 1.0, "duration": 0.01}]
                + [{"step": 1, "rate": 0.0, "duration": 0.01}] * (self.gen.size - 1),
            )
            col = self.gen.call(
                "collect",
                self.mode.ceiling_s + 20,
                {
                    "step": 1,
                    "expected_each": 10**12,
                    "timeout": self.mode.ceiling_s + 10,
                    "quiet": 0.3,
                },
            )
            g1, s1 = self.gen.cpu(), server.cpu()
            count = sum(c["count"] for c in col)
            first = min(c["t_first"] for c in col if c["t_first"]) if count else 0
            last = max(c["t_last_change"] for c in col) if count else 0
            secs = (last - first) / 1e9 if count else 0.0
            # both are busy only while the blast lasts: CPU over the blast's length
            gen_pct = min(100.0, 100 * (g1 - g0) / max(1e-9, secs))
            blaster_pct = min(100.0, 100 * (s1 - s0) / max(1e-9, secs))
            nbytes = sum(c["nbytes"] for c in col)
        finally:
            with contextlib.suppress(Exception):
                self.gen.call("close", 30, {})
            server.kill()
        rate = count / secs if secs > 0 else 0.0
        # CPU-linear projection when the blaster, not the generator, was the limit
        projected = rate * 100 / gen_pct if gen_pct > 5 else rate
        log(
            f"generator ceiling: {rate / 1000:.0f}k deliveries/s parsed "
            f"({nbytes / max(1, count):.0f} B each), generator CPU {gen_pct:.0f}%, "
            f"blaster CPU {blaster_pct:.0f}% (projected {projected / 1000:.0f}k at 100 %)"
        )
        return {
            "deliveries_per_s": rate,
            "gen_cpu_pct": gen_pct,
            "blaster_cpu_pct": blaster_pct,
            "projected_per_s": projected,
            "seconds": secs,
            "count": count,
        }

    def execute(self) -> dict[str, Any]:
        started = time.time()
        results: dict[str, Any] = {
            "mode": asdict(self.mode),
            "command": self.args.command_line,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "machine": machine(),
            "server_cpus": sorted(self.server_cpus),
            "gen_cpus": self.gen_cpus,
            "gen_procs": self.gen.size,
            "targets": {k: TARGETS[k].label for k in self.args.targets},
            "redis_ns": self.mode.redis_ns,
            "redis_procs_cpus": sorted(self.server_cpus),
            "cases": [],
        }
        try:
            t = time.monotonic()
            self.launch_all()
            log(
                f"{len(self.servers) + 1} servers started "
                f"and parked in {time.monotonic() - t:.1f} s"
            )
            results["idle_check"] = idle_check()
            results["ceiling"] = self.ceiling()
            profile_n = max(self.args.ns)
            for n in self.args.ns:
                log(f"N = {n}")
                for key in self.args.targets:
                    if (key, n) not in self.servers:
                        continue  # a Redis case at an N it does not run at
                    case = Case(self, TARGETS[key], n, self.servers[(key, n)])
                    try:
                        res = case.execute(
                            profile=self.args.profile
                            and key in ("ours-ws", "ours-sse")
                            and n == profile_n
                        )
                    except Exception as exc:  # keep going: one broken case must not lose the rest
                        log(f"  {key} N={n} FAILED: {type(exc).__name__}: {exc}")
                        res = {
                            **case.result,
                            "error": f"{type(exc).__name__}: {exc}",
                            "steps": case.steps,
                        }
                        tail = case.server.log_tail()
                        if tail:
                            res["server_log"] = tail
                    results["cases"].append(res)
        finally:
            self.gen.close()
            self.kill_all()
        results["seconds"] = time.time() - started
        return results


def idle_check() -> dict[str, Any]:
    """CPU use of the machine before we start (a busy machine makes the run suspect)."""
    per = psutil.cpu_percent(interval=0.5, percpu=True)
    return {"cpu_pct": per, "busy": any(p > 20 for p in per)}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for mod in (
        "websockets",
        "uvicorn",
        "uvloop",
        "httptools",
        "fastapi",
        "starlette",
        "socketio",
        "engineio",
        "sse_starlette",
        "orjson",
    ):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        versions["python-socketio"] = version("python-socketio")
        versions["sse-starlette"] = version("sse-starlette")
        versions.pop("socketio", None)
        versions.pop("sse_starlette", None)
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="N = 100, 1000; short steps (< 2 min)")
    group.add_argument("--full", action="store_true", help="N = 100, 1000, 5000 (< 30 min)")
    parser.add_argument("--n", help="comma-separated N list (overrides the mode's)")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"subset of {','.join(TARGETS)}"
    )
    parser.add_argument("--gen-procs", type=int, default=0, help="generator processes (default 1)")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="py-spy on Lastra at its knee, largest N (default: on in --full, off in --quick)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--coalesce-ms",
        type=float,
        default=1.0,
        help="generator read coalescing under heavy load (0 = read every frame at once)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice value for servers and generators (e.g. -10 on a shared machine; needs root)",
    )
    args = parser.parse_args(argv)
    mode = MODES["full" if args.full else "quick"]
    if args.profile is None:
        args.profile = mode.name == "full"
    args.ns = [int(x) for x in args.n.split(",")] if args.n else mode.ns
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}")
    if "bare" not in args.targets:
        args.targets.insert(0, "bare")  # every figure is a ratio to it
    args.command_line = shlex.join(
        ["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)]
    )
    gen_cpus = list(range(1, os.cpu_count() or 1))
    if gen_cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(gen_cpus))  # the coordinator stays off the server's CPU
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    NICE["value"] = args.nice
    runner = Runner(mode, args)
    log(
        f"{mode.name} run: N={args.ns}, targets={args.targets}, server on CPU "
        f"{sorted(runner.server_cpus)}, generator on CPU {runner.gen_cpus}"
    )
    results = runner.execute()
    from .report import write_report

    path = write_report(results, runner.out_dir)
    (runner.out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    log(f"done in {results['seconds']:.0f} s → {path}")
    print()
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
