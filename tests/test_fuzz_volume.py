"""A short run of ``make fuzz`` inside the suite (issue 14): same generator, same checks.

``tests/fuzzer.py`` is the fuzzer; ``make fuzz`` runs it for ten minutes and asks for
100,000 inputs. Here it runs for ``LASTRA_FUZZ_SECONDS`` (default 15) with a seed
that changes every run and is printed on failure, so the suite explores too.
"""

from __future__ import annotations

import asyncio
import os
import time

from support.fuzzer import fuzz, report, settings_for_fuzz
from support.server import Server

SECONDS = float(os.environ.get("LASTRA_FUZZ_SECONDS", "15"))


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = settings_for_fuzz()


def test_a_short_fuzz_finds_nothing(srv: Server) -> None:
    seed = int(os.environ.get("LASTRA_FUZZ_SEED", time.time()))
    started = time.monotonic()
    tally = asyncio.run(fuzz(srv, SECONDS, seed, workers=1))
    summary = f"seed {seed}\n{report(tally, time.monotonic() - started)}"
    assert not tally.failures, summary
    assert tally.total >= 1000, summary  # every generator ran, at volume
    assert all(tally.inputs[kind] for kind in ("ws-frame", "raw-frame", "post", "session", "sse"))
