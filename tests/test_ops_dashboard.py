"""The Grafana dashboard and the operator docs match the metrics the server exports.

No server needed: ``app.metrics.Metrics().render()`` is exactly what ``/metrics`` serves
(the tests in ``test_ops_metrics.py`` scrape the real thing), so every series the dashboard
queries and every family the operator docs describe can be checked against it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from support.server import ROOT

from app.metrics import Metrics

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
DOC = ROOT / "docs" / "observability.md"


def exported_series() -> set[str]:
    """Every sample name ``/metrics`` can carry (``_total``, ``_bucket``, ``_count``, …)."""
    text = Metrics().render().decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "counter":
                names.add(f"{name.removesuffix('_total')}_total")
            elif kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            else:
                names.add(name)
    return {n for n in names if not n.endswith("_created")}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_uses_a_prometheus_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_queries_only_series_the_server_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_series()
    queried = set()
    for panel in panels(dashboard):
        for target in panel["targets"]:
            queried |= set(re.findall(r"\blastra_[a-z_]+", target["expr"]))
    assert queried, "no lastra_ series queried"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
    # every family is on the dashboard somewhere
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in queried}
    assert families <= shown, f"families not on the dashboard: {sorted(families - shown)}"


def test_dashboard_has_the_panels_an_operator_needs(dashboard: dict[str, Any]) -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(dashboard)}

    def find(words: str) -> str:
        hits = [t for t in exprs if all(w.lower() in t.lower() for w in words.split())]
        assert hits, f"no panel titled like {words!r}: {sorted(exprs)}"
        return exprs[hits[0]]

    assert "by (transport)" in find("connections open by transport")
    assert "lastra_connections_opened_total" in find("connection rate")
    assert "lastra_messages_in_total" in find("messages in transport")
    assert "lastra_messages_out_total" in find("messages out transport")
    errors = find("error rate transport code")
    assert "lastra_errors_total" in errors and "code" in errors and "transport" in errors
    assert "lastra_closes_total" in find("close codes")
    assert "outcome" in find("resume outcomes")
    latency = find("latency p50 p99")
    assert "histogram_quantile(0.5," in latency and "histogram_quantile(0.99," in latency
    assert "by (le, transport)" in latency
    assert "lastra_outbound_overflow_total" in find("overflow")
    assert "lastra_bot_failures_total" in find("bot failures")
    assert "lastra_rollout_assignments_total" in find("rollout assignments")


def test_dashboard_layout_fits_the_grid(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_observability_doc_describes_every_metric_family() -> None:
    text = DOC.read_text()
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in exported_series()}
    missing = [f for f in sorted(families) if f not in text]
    assert not missing, f"docs/observability.md does not describe {missing}"
    for words in ("/healthz", "/readyz", "/metrics", "/admin", "LASTRA_ADMIN_TOKEN", "roll back"):
        assert words in text, words
