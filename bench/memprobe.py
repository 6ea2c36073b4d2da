"""Idle memory per connection, quickly, with an optional tracemalloc diff of the server.

The full bench measures RSS per idle connection once per case, between ramps; this tool
runs only that phase (same generator, same connect code, same settle) so that a change to
the per-connection footprint can be checked in seconds::

    python -m bench.memprobe --targets ours-ws,fastapi --n 1000 [--trace 25]

``--trace K`` starts the server with tracemalloc (a ``sitecustomize`` in a temporary
directory: nothing in the app knows) and prints the K biggest allocation sites that grew
between "warm" and "N idle clients", per connection.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import MODES, Case, Gen, tokens
from bench.servers import TARGETS, Server

SITE = """
import os, signal, tracemalloc
tracemalloc.start(int(os.environ.get("MEMPROBE_FRAMES", "1")))
_snaps = []
def _dump(signum, frame):
    _snaps.append(tracemalloc.take_snapshot())
    if len(_snaps) == 2:
        a, b = _snaps
        key = os.environ.get("MEMPROBE_KEY", "lineno")
        stats = b.compare_to(a, key)
        with open(os.environ["MEMPROBE_OUT"] + ".tmp", "w") as f:
            for s in stats[: int(os.environ.get("MEMPROBE_TOP", "25"))]:
                f.write(f"{s.size_diff}\\t{s.count_diff}\\t{s.traceback.format()[-1].strip()}"
                        f"\\t{' <- '.join(l.strip() for l in s.traceback.format()[:-1][-6:])}\\n")
            total = sum(s.size_diff for s in stats)
            f.write(f"{total}\\t0\\tTOTAL\\t\\n")
        os.rename(os.environ["MEMPROBE_OUT"] + ".tmp", os.environ["MEMPROBE_OUT"])
signal.signal(signal.SIGUSR2, _dump)
"""


class _Run:
    """The few attributes of bench.run.Runner that Case.connect reads."""

    def __init__(self, mode_name: str, n: int) -> None:
        self.mode = MODES[mode_name]
        self.gen = Gen(1, [1] if (os.cpu_count() or 1) > 1 else [], 600)
        self.tokens = tokens(n)
        self.warm_tokens = tokens(4, base=10_000_000)
        self.args = argparse.Namespace(coalesce_ms=0)

    def wire(self, target: object, port: int, ports: list[int] | None = None) -> dict[str, object]:
        return {**target.wire(port, ports), "coalesce_ms": 0}  # type: ignore[attr-defined]


def probe(run: _Run, key: str, n: int, top: int, frames: int, pyspy: str = "") -> None:
    target = TARGETS[key]
    log_dir = Path(tempfile.mkdtemp(prefix="lastra-memprobe-"))
    server = Server(target, {0} if (os.cpu_count() or 1) > 1 else set(), log_dir, [])
    out = log_dir / "trace.tsv"
    saved = dict(os.environ)
    if top:
        site = log_dir / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITE)
        os.environ["PYTHONPATH"] = f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        os.environ.update(MEMPROBE_OUT=str(out), MEMPROBE_TOP=str(top), MEMPROBE_FRAMES=str(frames))
    try:
        server.launch().wait_listening(60)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    case = Case(run, target, n, server)  # type: ignore[arg-type]
    try:
        run.gen.call("setup", 30, {"target": run.wire(target, server.port, server.ports)})
        if top:
            # snapshot A after the warm-up: Case.connect warms, then measures rss0
            orig = server.rss

            calls = {"n": 0}

            def rss() -> int:
                calls["n"] += 1
                os.kill(server.pid, signal.SIGUSR2)
                time.sleep(1.0 + calls["n"] * n / 2000)
                return orig()

            server.rss = rss  # type: ignore[method-assign]
        spy = None
        if pyspy:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "-p",
                    str(server.pid),
                    "-o",
                    pyspy,
                    "-f",
                    "raw",
                    "-r",
                    "250",
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        case.connect()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        r = case.result
        print(
            f"{key:10} N={n}: connected {r['connected']} in {r['connect_all_s']:.2f} s, "
            f"p50 {r['connect_p50_ms']:.1f} ms p99 {r['connect_p99_ms']:.1f} ms, "
            f"RSS {r['rss_base'] / 2**20:.1f} → {r['rss_idle'] / 2**20:.1f} MiB, "
            f"{r['rss_per_conn_kb']:.1f} KB/conn",
            flush=True,
        )
        deadline = time.monotonic() + 60
        while top and not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if top and out.exists():
            print(f"  tracemalloc growth per connection (top {top}):")
            for line in out.read_text().splitlines():
                size, count, where, stack = line.split("\t")
                print(
                    f"  {int(size) / max(1, n):9.0f} B {int(count) / max(1, n):6.1f}×  {where}"
                    + (f"   [{stack}]" if stack and frames > 1 else "")
                )
    finally:
        run.gen.call("close", 30, {})
        server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="ours-ws,uvicorn-raw,fastapi,bare")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--mode", default="quick", choices=sorted(MODES))
    parser.add_argument("--trace", type=int, default=0, metavar="K")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--pyspy", default="", help="py-spy raw profile of the connect phase")
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="KEY=MODULE",
        help="probe another ASGI server module as a WS target (an experiment's floor)",
    )
    args = parser.parse_args(argv)
    args.module.insert(0, "uvicorn-raw=bench.baselines.raw_asgi")
    for spec in args.module:
        key, module = spec.split("=", 1)
        TARGETS[key] = dataclasses.replace(TARGETS["fastapi"], key=key, label=key, module=module)
    run = _Run(args.mode, args.n)
    try:
        for key in args.targets.split(","):
            probe(run, key, args.n, args.trace, args.frames, args.pyspy)
    finally:
        run.gen.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
