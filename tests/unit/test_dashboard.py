"""deploy/grafana/lb.json: every metric its PromQL names is one the daemon exports at /metrics,
every panel has a title and a unique id, and every variable it uses is defined."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_helpers import Rest, create_vip, rest_api

import lb.control.nexthop  # noqa: F401  (registers lb_next_hop_changes, as the daemon does)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "lb.json"
# PromQL words that are not metric names (functions, aggregations, modifiers, label names).
PROMQL_WORDS = {"rate", "irate", "increase", "sum", "avg", "min", "max", "count", "by",
                "without", "on", "ignoring", "group_left", "group_right", "topk", "bottomk",
                "histogram_quantile", "label_values", "offset", "and", "or", "unless",
                "clamp_min", "abs", "le", "vip", "backend", "state", "reason", "verdict",
                "result", "method", "route", "status"}
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count", ""], "gauge": [""]}


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[Rest]:
    with rest_api(tmp_path) as rest:
        yield rest


def exported(rest: Rest) -> set[str]:
    """The sample names /metrics can carry, from its # TYPE lines and its samples."""
    create_vip(rest.client, "10.100.0.5", 80, backends={"10.1.0.2": 1})
    text = rest.client.get("/metrics").text
    names = {m[1].removesuffix("_total") + s
             for m in re.finditer(r"^# TYPE (\w+) (\w+)$", text, re.M)
             for s in SUFFIXES.get(m[2], [""])}
    return names | set(re.findall(r"^([a-zA-Z_:]\w*)[{ ]", text, re.M))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            yield var["definition"]


def metric_names(expr: str) -> set[str]:
    """Identifiers of `expr` that name a metric: not PromQL words, strings, variables or
    label names inside {...} or by (...)."""
    expr = re.sub(r'"[^"]*"', '""', expr)                  # string literals
    expr = re.sub(r"\{[^}]*\}", "{}", expr)                 # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)                # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)                       # variables
    words = set(re.findall(r"[a-zA-Z_:][\w:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_every_metric_the_dashboard_queries_is_exported(rest: Rest) -> None:
    names = exported(rest)
    used = {n for e in expressions(load()) for n in metric_names(e)}
    assert used, "the dashboard queries no metric"
    assert "lb_vip_ct_miss_nonsyn_total" in used
    assert used <= names, sorted(used - names)


def test_the_tokenizer_finds_metric_names_not_functions_or_labels() -> None:
    expr = 'sum by (vip) (rate(lb_vip_bytes_total{vip=~"$vip"}[$__rate_interval])) / lb_x'
    assert metric_names(expr) == {"lb_vip_bytes_total", "lb_x"}


def test_every_panel_has_a_title_and_a_unique_id() -> None:
    all_panels = list(panels(load()))
    assert all(p.get("title") for p in all_panels)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))


def test_every_variable_used_is_defined() -> None:
    dashboard = load()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    text = DASHBOARD.read_text()
    used = set(re.findall(r"\$\{?(\w+)", text)) - {"__rate_interval", "__interval"}
    assert {"vip", "DS_PROMETHEUS"} <= used
    assert used <= defined, sorted(used - defined)
    assert dashboard["schemaVersion"] >= 36
