"""Markdown table and PNG charts from one run's results (``bench/results/<mode>/``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

TARGET_P99 = 250.0
STORM = "ours-ws-storm"  # the restart-storm case: no ramp, its own table


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "—"
    a = abs(v)
    if unit == "rate":
        if a >= 1e6:
            return f"{v / 1e6:.2f}M"
        if a >= 1e3:
            return f"{v / 1e3:.1f}k" if a < 1e5 else f"{v / 1e3:.0f}k"
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _ratio(v: float | None, base: float | None) -> str:
    if v is None or base is None or not base or math.isinf(v) or math.isinf(base):
        return ""
    if isinstance(v, float) and math.isnan(v):
        return ""
    return f" ({v / base:.2f}×)"


def _cases(results: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(c["target"], c["n"]): c for c in results["cases"]}


def _knee(c: dict[str, Any] | None, key: str) -> float | None:
    if not c or c.get("error"):
        return None
    knee = c.get("knee")
    if not knee:
        return 0.0 if key == "deliveries_per_s" else None
    return float(knee[key])


def _disturbed(step: dict[str, Any]) -> bool:
    return max(step.get("server_wait_pct", 0), step.get("gen_wait_pct", 0)) > 5


def _rows(c: dict[str, Any] | None, base: dict[str, Any] | None) -> dict[str, str]:
    """Every cell of one column (one server at one N), ratio to the bare server."""
    if c is None:
        return {}
    if c.get("error") and "connected" not in c:
        return {"deliveries": f"error: {c['error'][:60]}"}
    cells: dict[str, str] = {}
    d, bd = _knee(c, "deliveries_per_s"), _knee(base, "deliveries_per_s")
    if c.get("target") == STORM:
        back = (c.get("storm") or {}).get("back_s")
        cells["deliveries"] = (
            f"no ramp: restart storm, all back at {_fmt(back)} s (its table below)"
            if back is not None
            else f"no ramp: restart storm, error: {str(c.get('error'))[:50]}"
        )
    elif c.get("knee"):
        cells["deliveries"] = f"**{_fmt(d, 'rate')}**{_ratio(d, bd)}"
        if _disturbed(c["knee"]):
            cells["deliveries"] += " ⚠"
    else:
        worst = c.get("none_p99_ms")
        cells["deliveries"] = (
            f"**none** (best p99 {_fmt(worst)} ms, down to 1 msg/s)" if worst else "**none**"
        )
        if c.get("error"):
            cells["deliveries"] += f" error: {c['error'][:50]}"
    p50, p99 = _knee(c, "p50_ms"), _knee(c, "p99_ms")
    bp50, bp99 = _knee(base, "p50_ms"), _knee(base, "p99_ms")
    if p50 is not None and p99 is not None:
        r = f" ({p50 / bp50:.2f}× / {p99 / bp99:.2f}×)" if bp50 and bp99 else ""
        cells["latency"] = f"{_fmt(p50)} / {_fmt(p99)}{r}"
    v, b = _knee(c, "cpu_s_per_100k"), _knee(base, "cpu_s_per_100k")
    if v is not None:
        cells["cpu"] = f"{_fmt(v)}{_ratio(v, b)}"
    v, b = _knee(c, "bytes_per_delivery"), _knee(base, "bytes_per_delivery")
    if v is not None:
        cells["bytes"] = f"{_fmt(v)}{_ratio(v, b)}"
    if "connect_p50_ms" in c:
        b50 = base.get("connect_p50_ms") if base else None
        b99 = base.get("connect_p99_ms") if base else None
        r = ""
        if b50 and b99:
            r = f" ({c['connect_p50_ms'] / b50:.2f}× / {c['connect_p99_ms'] / b99:.2f}×)"
        cells["connect"] = f"{_fmt(c['connect_p50_ms'])} / {_fmt(c['connect_p99_ms'])}{r}"
        b = base.get("connect_all_s") if base else None
        cells["connect_all"] = f"{_fmt(c['connect_all_s'])}{_ratio(c['connect_all_s'], b)}"
        if c.get("connected", 0) < c["n"]:
            cells["connect_all"] += f" ({c['connected']}/{c['n']} connected)"
        b = base.get("rss_per_conn_kb") if base else None
        cells["rss"] = f"{_fmt(c['rss_per_conn_kb'])}{_ratio(c['rss_per_conn_kb'], b)}"
    st = c.get("stall")
    if st and "cut" in st:
        bst = (base or {}).get("stall") or {}
        r = ""
        if bst.get("others_per_s"):
            r = f" ({st['others_per_s'] / bst['others_per_s']:.2f}×)"
        cells["stall"] = f"−{100 * st['cut']:.0f}% ({_fmt(st['others_per_s'], 'rate')}/s){r}"
        if st.get("starved"):
            cells["stall"] += " ⚠"
        if st.get("reopened"):
            cells["stall"] += " (the staller, cut as a slow consumer in the ramp, reconnected)"
        elif st.get("close_codes"):
            codes = ",".join(st["close_codes"])
            cells["stall"] += f" staller closed {codes}"
    seq = c.get("seq")
    if seq:
        bad = seq["gaps"] or seq["dups"] or seq["behind"]
        what = (
            "ok"
            if not bad
            else f"**FAIL** gaps {seq['gaps']} dups {seq['dups']} behind {seq['behind']}"
        )
        if c.get("target", "").startswith("ours"):
            cells["seq"] = f"{what} ({seq['checked']} clients)"
            if not seq["checked"]:
                cells["seq"] = f"**no client left to check** ({seq['closed']} closed)"
            for rc in c.get("reconnects") or []:
                codes = ",".join(rc["codes"])
                cells["seq"] += f"; all reconnected after the server closed them ({codes})"
        else:
            cells["seq"] = f"{what} (informative)"
    return cells


ROW_TITLES = [
    ("deliveries", "**fan-out deliveries/s** (highest step with p99 < 250 ms)"),
    ("latency", "p50 / p99 latency there (ms)"),
    ("cpu", "server CPU s per 100k deliveries"),
    ("bytes", "bytes on the wire per delivered chat message"),
    ("connect", "connection setup p50 / p99 (ms)"),
    ("connect_all", "time to connect all N (s)"),
    ("rss", "server RSS per idle connection (KB)"),
    ("stall", "one stalled reader: others' deliveries/s cut"),
    ("seq", "seq check (no gap, no duplicate, all at the same last seq)"),
]


def _targets_section(results: dict[str, Any]) -> list[str]:
    cases = _cases(results)
    ns = sorted({c["n"] for c in results["cases"]})
    lines = [
        "## Lastra against the issue's targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("✅" if ok else "❌")

    def d(key: str, n: int) -> float | None:
        return _knee(cases.get((key, n)), "deliveries_per_s")

    for n in ns:
        ours, bare = d("ours-ws", n), d("bare", n)
        if ours is not None and bare:
            lines.append(
                f"| WS ≥ 0.8× bare deliveries/s, N={n} | "
                f"{_fmt(ours, 'rate')} = {ours / bare:.2f}× bare "
                f"| {verdict(ours >= 0.8 * bare)} |"
            )
    for n in ns:
        c = cases.get(("ours-ws", n))
        if c and "rss_per_conn_kb" in c:
            v = c["rss_per_conn_kb"]
            lines.append(
                f"| ≤ 24 KB per idle WS connection, N={n} | {v:.1f} KB | {verdict(v <= 24)} |"
            )
    c = cases.get(("ours-ws", 5000))
    if c and "connect_all_s" in c:
        v = c["connect_all_s"]
        lines.append(
            f"| 5,000 WS clients connected in < 2 s | {v:.2f} "
            f"s | {verdict(v < 2 and c['connected'] == 5000)} |"
        )
    else:
        lines.append("| 5,000 WS clients connected in < 2 s | not run (full mode only) | — |")
    ours, naive = d("ours-sse", 1000), d("sse-naive", 1000)
    if ours is not None and naive is not None:
        ratio = ours / naive if naive else math.inf
        lines.append(
            f"| SSE ≥ 3× naive SSE at N=1000 | {_fmt(ours, 'rate')} "
            f"vs {_fmt(naive, 'rate')} = {ratio:.2f}× "
            f"| {verdict(ratio >= 3)} |"
        )
    ours = d("ours-sse", 5000)
    if ours is not None:
        lines.append(
            "| SSE ≥ 30k deliveries/s at N=5000 (p99 < 250 ms) | "
            f"{_fmt(ours, 'rate')} | {verdict(ours >= 30_000)} |"
        )
    else:
        lines.append("| SSE ≥ 30k deliveries/s at N=5000 | not run (full mode only) | — |")
    for key in ("ours-ws", "ours-sse"):
        for n in ns:
            c = cases.get((key, n))
            st = (c or {}).get("stall") or {}
            if "cut" in st:
                lines.append(
                    f"| one stalled reader cuts others ≤ 10 %, {TITLE.get(key, key)} N={n} "
                    f"| −{100 * st['cut']:.1f}% | {verdict(st['cut'] <= 0.10)} |"
                )
    for key in TITLE:
        for n in ns:
            seq = ((cases.get((key, n)) or {}).get("seq")) or {}
            if seq:
                bad = seq["gaps"] + seq["dups"] + seq["behind"]
                lines.append(
                    f"| no loss / reorder, {TITLE.get(key, key)} N={n} | {seq['checked']} clients, "
                    f"gaps {seq['gaps']}, dups {seq['dups']}, behind "
                    f"{seq['behind']} | {verdict(bad == 0)} |"
                )
    return lines


def _scale_section(results: dict[str, Any]) -> list[str]:
    """Issue 18's targets: connect, storm, bots, memory and CPU against the peers."""
    cases = _cases(results)

    def verdict(ok: bool) -> str:
        return "✅" if ok else "❌"

    def get(key: str, n: int, field: str) -> Any:
        return (cases.get((key, n)) or {}).get(field)

    lines = [
        "## Issue 18's targets (ratios within this run)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for key, limit in (("ours-ws", 2.0), ("ours-sse", 3.0)):
        v = get(key, 5000, "connect_all_s")
        if v is not None:
            n_ok = get(key, 5000, "connected") == 5000
            lines.append(
                f"| 5,000 {TITLE[key]} clients connected and greeted in < {limit:.0f} s "
                f"| {v:.2f} s | {verdict(v < limit and n_ok)} |"
            )
    st = get(STORM, 5000, "storm")
    if not st and get(STORM, 5000, "error"):
        lines.append(
            "| restart storm of 5,000 back with `recovered: true` in < 3 s | error: "
            f"{get(STORM, 5000, 'error')} | ❌ |"
        )
    if st:
        ok = st["back_s"] < 3 and st["recovered"] == st["n"] == st["back"]
        lines.append(
            f"| restart storm of 5,000 back with `recovered: true` in < 3 s | "
            f"{st['back_s']:.2f} s ({st['recovered']}/{st['n']} recovered; new process "
            f"listening at {st['listen_s']:.2f} s) | {verdict(ok)} |"
        )
    for bots, muted in (("ours-ws-bots", "ours-ws"), ("ours-sse-bots", "ours-sse")):
        a = _knee(cases.get((bots, 5000)), "deliveries_per_s")
        b = _knee(cases.get((muted, 5000)), "deliveries_per_s")
        if a is not None and b:
            lines.append(
                f"| bots on ≥ 0.85× muted, {TITLE[muted]} N=5000 | {_fmt(a, 'rate')} vs "
                f"{_fmt(b, 'rate')} = {a / b:.2f}× | {verdict(a >= 0.85 * b)} |"
            )
    for key, limit in (("ours-ws", 14.0), ("ours-sse", 20.0)):
        v = get(key, 5000, "rss_per_conn_kb")
        if v is not None:
            lines.append(
                f"| ≤ {limit:.0f} KB per idle connection, {TITLE[key]} N=5000 | {v:.1f} KB "
                f"| {verdict(v <= limit)} |"
            )
    for ours, peer, factor in (("ours-ws", "nchan-ws", 1.0), ("ours-sse", "nchan-sse", 1.3)):
        for n in (1000, 5000):
            a = _knee(cases.get((ours, n)), "cpu_s_per_100k")
            b = _knee(cases.get((peer, n)), "cpu_s_per_100k")
            if a is not None and b:
                lines.append(
                    f"| CPU per delivery ≤ {factor}× nchan's, {TITLE[ours]} N={n} | "
                    f"{a:.3f} vs {b:.3f} s/100k = {a / b:.2f}× | {verdict(a <= factor * b)} |"
                )
    return lines


def _storm_section(results: dict[str, Any]) -> list[str]:
    """One row per N of the restart storm: every figure of ``case["storm"]``, or its error."""
    rows = [c for c in results["cases"] if c.get("storm") or c["target"] == "ours-ws-storm"]
    if not rows:
        return []
    lines = [
        "## Restart storm (Lastra WS, SQLite; seconds from the SIGTERM)",
        "",
        "Clients come back as the bundled client does: after the 1012, 3 attempts within "
        "1 s (full jitter), then the doubling backoff. *Back* = last `ready` and presence "
        "whole at the observer, whichever is later; attempts per client: how many clients "
        "were back at their 1st, 2nd, … attempt.",
        "",
        "| N | old process exited | new listening | `ready` p50 / p99 (back by 3 s) "
        "| last `ready` | presence whole | back | recovered / back / closed "
        "| attempts per client | failed attempts | seq check |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(rows, key=lambda c: c["n"]):
        st, seq = c.get("storm"), c.get("seq") or {}
        if not st:
            lines.append(f"| {c['n']} | error: {c.get('error', 'no figures')} |" + " |" * 9)
            continue
        att = ", ".join(f"{k}: {v}" for k, v in sorted(st["attempts"].items(), key=_num))
        when = st.get("failed_when") or {}
        fails = ", ".join(
            f"{k} {v}" + (f" ({_fmt(when[k][0])}–{_fmt(when[k][1])} s)" if k in when else "")
            for k, v in sorted(st["failures"].items(), key=lambda kv: -kv[1])
        )
        if st.get("gave_up"):
            fails += f"; **{st['gave_up']} gave up** (20 attempts)"
        back = f"{st['recovered']} / {st['back']} / {st['closed']}"
        codes = st.get("close_codes") or {}
        if codes and {str(k) for k in codes} != {"1012"}:  # int keys until a JSON round trip
            back += " (closed with " + ", ".join(f"{k}: {v}" for k, v in codes.items()) + ")"
        crowd = "—"
        if st.get("ready_p50_s") is not None:
            crowd = (
                f"{_fmt(st['ready_p50_s'])} / {_fmt(st['ready_p99_s'])} "
                f"({st['ready_by_3s']}/{st['closed']})"
            )
        lines.append(
            f"| {c['n']} | {_fmt(st['exit_s'])} | {_fmt(st['listen_s'])} | {crowd} "
            f"| {_fmt(st['all_ready_s'])} | {_fmt(st['converged_s'])} | **{_fmt(st['back_s'])}** "
            f"| {back} | {att or '—'} | {fails or '—'} "
            f"| gaps {seq.get('gaps')}, dups {seq.get('dups')}, behind {seq.get('behind')} |"
        )
    return [*lines, ""]


def _num(kv: tuple[Any, Any]) -> int:
    """Attempt numbers are JSON object keys (strings): sort them as numbers."""
    return int(kv[0])


TITLE = {
    "ours-ws": "Lastra WS",
    "ours-sse": "Lastra SSE",
    "ours-ws-redis": "Lastra WS ×1 (Redis)",
    "ours-ws-redis2": "Lastra WS ×2 (Redis, one seq order across both processes)",
    "ours-sse-redis2": "Lastra SSE ×2 (Redis, one seq order across both processes)",
    "ours-ws-bots": "Lastra WS, bots on",
    "ours-sse-bots": "Lastra SSE, bots on",
    "ours-ws-storm": "Lastra WS restart storm",
}


def _ramps(results: dict[str, Any]) -> list[str]:
    lines = ["## Every step tried", ""]
    lines.append(
        "offered deliveries/s → measured deliveries/s, p99 ms, server/generator CPU %; "
        "✓ holds (p99 ≤ 250 ms, nothing lost, offered rate sent), ✗ fails."
    )
    lines.append("")
    for c in results["cases"]:
        steps = c.get("steps") or []
        if c["target"] == STORM and not steps:
            lines.append(f"- **{c['label']}**, N={c['n']}: no ramp (see the restart storm)")
            continue
        parts = []
        for s in steps:
            mark = "✓" if s["holds"] else "✗"
            tag = "" if s["kind"] == "ramp" else f"[{s['kind']}] "
            parts.append(
                f"{tag}{_fmt(s['level'], 'rate')}→{_fmt(s['deliveries_per_s'], 'rate')} "
                f"p99 {_fmt(s['p99_ms'])} {s['server_cpu_pct']:.0f}/{s['gen_cpu_pct']:.0f}% {mark}"
            )
        lines.append(f"- **{c['label']}**, N={c['n']}: " + "; ".join(parts))
    return lines


def _charts(results: dict[str, Any], out: Path) -> list[str]:
    cases = _cases(results)
    keys = list(results["targets"])
    labels = results["targets"]
    ns = sorted({c["n"] for c in results["cases"]})
    files = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # 1. deliveries/s at the knee
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(keys))
    for i, key in enumerate(keys):
        vals = [_knee(cases.get((key, n)), "deliveries_per_s") or 0 for n in ns]
        xs = [j + i * width for j in range(len(ns))]
        ax.bar(xs, vals, width, label=labels[key], color=colors[i % len(colors)])
    ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(ns))], [f"N={n}" for n in ns])
    ax.set_ylabel("deliveries/s at p99 < 250 ms")
    ax.set_title("Fan-out throughput (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "deliveries.png", dpi=110)
    plt.close(fig)
    files.append("deliveries.png")

    # 2. p99 vs offered load
    fig, axes = plt.subplots(1, len(ns), figsize=(5 * len(ns), 4), squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        for i, key in enumerate(keys):
            c = cases.get((key, n))
            steps = sorted(
                (s for s in (c or {}).get("steps", []) if s["kind"] == "ramp"),
                key=lambda s: s["level"],
            )
            if steps:
                ax.plot(
                    [s["level"] for s in steps],
                    [min(s["p99_ms"], 1e5) for s in steps],
                    "o-",
                    label=labels[key],
                    color=colors[i % len(colors)],
                    ms=3,
                )
        ax.axhline(TARGET_P99, color="red", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v, "rate")))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("offered deliveries/s")
        ax.set_ylabel("p99 latency (ms)")
        ax.set_title(f"N={n}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    files.append("latency.png")

    # 3. memory, connect, cpu
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    metrics = [
        ("rss_per_conn_kb", "RSS per idle connection (KB)", False),
        ("connect_all_s", "time to connect all N (s)", False),
        ("cpu_s_per_100k", "server CPU s per 100k deliveries", True),
    ]
    for ax, (key_m, title, knee) in zip(axes, metrics, strict=True):
        for i, key in enumerate(keys):
            vals = []
            for n in ns:
                c = cases.get((key, n)) or {}
                v = _knee(c, key_m) if knee else c.get(key_m)
                vals.append(v if v is not None and not math.isinf(v) else 0)
            xs = [j + i * width for j in range(len(ns))]
            ax.bar(xs, vals, width, label=labels[key], color=colors[i % len(colors)])
        ax.set_xticks(
            [j + width * (len(keys) - 1) / 2 for j in range(len(ns))], [f"N={n}" for n in ns]
        )
        ax.set_title(title + " (lower is better)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(keys), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(out / "resources.png", dpi=110)
    plt.close(fig)
    files.append("resources.png")
    return files


def write_report(results: dict[str, Any], out: Path) -> Path:
    cases = _cases(results)
    keys = list(results["targets"])
    labels = results["targets"]
    ns = sorted({c["n"] for c in results["cases"]})
    m = results["machine"]
    ceiling = results.get("ceiling") or {}
    best = max(
        (_knee(c, "deliveries_per_s") or 0 for c in results["cases"]),
        default=0,
    )
    lines = [
        f"# Lastra Chat benchmark — {results['mode']['name']} mode",
        "",
        f"Reproduce: `{results['command']}` (from the repository root, in the venv; "
        f"`make bench{'-quick' if results['mode']['name'] == 'quick' else ''}` runs the same).",
        "",
        f"Run {results['started']}, {results['seconds']:.0f} "
        f"s. Machine: {m['cpu']}, {m['cpus']} CPUs, "
        f"Linux {m['kernel']}, Python {m['python']}. "
        f"Server pinned to CPU {results['server_cpus']}, "
        f"generator ({results['gen_procs']} process, uvloop) "
        f"and coordinator on CPU {results['gen_cpus']}. "
        + ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()))
        + ".",
        "",
    ]
    if ceiling:
        measured = ceiling["deliveries_per_s"]
        projected = ceiling.get("projected_per_s", measured)
        ratio = projected / best if best else math.inf
        lines.append(
            f"Generator ceiling: **{_fmt(measured, 'rate')} deliveries/s** parsed on one core, "
            "fed by a raw server that writes one frame per connection at a time (generator CPU "
            f"{ceiling['gen_cpu_pct']:.0f}%, blaster CPU {ceiling.get('blaster_cpu_pct', 0):.0f}%)"
            + (
                f"; the blaster was the limit, so at 100 % CPU the generator would parse about "
                f"**{_fmt(projected, 'rate')}/s**"
                if ceiling["gen_cpu_pct"] < 90
                else ""
            )
            + f": {ratio:.1f}× the best figure below"
            + (
                " — the generator is not the bottleneck (its CPU use at every knee is in the "
                "step list below)."
                if ratio >= 1.5
                else " — **too close: the generator may limit the fastest server.**"
            )
        )
        lines.append("")
    if results.get("idle_check", {}).get("busy"):
        lines += [
            "**Warning:** the machine was busy before the run "
            f"({results['idle_check']['cpu_pct']} % CPU): discard it.",
            "",
        ]
    disturbed = [
        f"{c['target']} N={c['n']}"
        for c in results["cases"]
        if (c.get("knee") and _disturbed(c["knee"])) or (c.get("stall") or {}).get("starved")
    ]
    if disturbed:
        lines += [
            "**Disturbed by other load** ⚠ (at the knee or in the stalled-reader step, the "
            "server or the generator waited > 5 % of the step for its CPU, see "
            f"`/proc/*/schedstat`): {', '.join(disturbed)}. "
            "Re-run on a quiet machine (or with `--nice -10`) before trusting those figures.",
            "",
        ]
    lines.append(
        "Each cell: value (ratio to the bare `websockets` server at the same N). "
        "Absolute numbers drift ±25 % between runs on a shared machine; ratios are what counts."
    )
    lines.append("")
    for n in ns:
        lines.append(f"### N = {n:,}")
        lines.append("")
        lines.append("| | " + " | ".join(labels[k] for k in keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        base = cases.get(("bare", n))
        cols = [_rows(cases.get((k, n)), base) for k in keys]
        for row, title in ROW_TITLES:
            lines.append(f"| {title} | " + " | ".join(col.get(row, "—") for col in cols) + " |")
        lines.append("")
    lines += [*_scale_section(results), "", *_storm_section(results)]
    lines += _targets_section(results)
    lines.append("")
    profiles = [c for c in results["cases"] if c.get("profile")]
    if profiles:
        lines += ["## Profiles of Lastra at its knee (py-spy, self time)", ""]
        for c in profiles:
            p = c["profile"]
            lines.append(f"**{c['label']}, N={c['n']}** (`{p['file']}`, {p['samples']} samples):")
            lines.append("")
            for f, share in p["top_self"][:10]:
                lines.append(f"- {100 * share:.1f}% `{f}`")
            lines.append("")
    lines += _ramps(results)
    lines.append("")
    errors = [c for c in results["cases"] if c.get("error")]
    if errors:
        lines += ["## Errors", ""]
        lines += [f"- {c['label']} N={c['n']}: {c['error']}" for c in errors]
        lines.append("")
    lines += ["## Charts", ""]
    for f in _charts(results, out):
        lines.append(f"![{f}]({f})")
    lines += ["", "Method: see `bench/README.md`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
