"""The PrometheusRule's alerts query metrics the code exports, with labels those metrics have: a
renamed metric or label would leave an alert that can never fire."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import REGISTRY

import mevaas_core.bus.metrics
import mevaas_core.metrics
import mevaas_operator.metrics
from tests.fixtures.k8s import render_chart

# Imported for their side effect: they register every metric the alerts read.
EXPORTERS = (mevaas_core.metrics, mevaas_core.bus.metrics, mevaas_operator.metrics)
SELECTOR = re.compile(r"\b(mevaas_[a-z0-9_]+)(\{([^}]*)\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported() -> dict[str, tuple[str, ...]]:
    """Every sample name the registry can produce -> the metric's label names."""
    names: dict[str, tuple[str, ...]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():  # the registry has no public map
        labels = tuple(getattr(collector, "_labelnames", ()))
        names[name] = labels
    return names


@pytest.fixture(scope="module")
def alerts() -> list[dict[str, Any]]:
    objs = render_chart(
        "mevaas",
        namespace="mevaas",
        release="mevaas",
        api_versions=["monitoring.coreos.com/v1/PrometheusRule"],
        set_values=["monitoring.prometheusRule.enabled=true"],
    )
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_every_alert_reads_exported_metrics_and_labels(alerts: list[dict[str, Any]]) -> None:
    metrics = exported()
    assert len(alerts) >= 8
    for alert in alerts:
        expr = str(alert["expr"])
        used = SELECTOR.findall(expr)
        assert used, alert["alert"]
        labels_in_expr: set[str] = set()
        for name, _, matchers in used:
            assert name in metrics, f"{alert['alert']}: {name} is not exported by any module"
            labels = set(metrics[name]) | ({"le"} if name.endswith("_bucket") else set())
            labels_in_expr |= labels
            for label, _, _ in MATCHER.findall(matchers):
                assert label in labels, f"{alert['alert']}: {name} has no label {label}"
        for group in GROUPING.findall(expr):
            for label in (part.strip() for part in group.split(",")):
                assert label in labels_in_expr, f"{alert['alert']}: grouped by {label}, which no metric has"


def test_the_operator_alerts_match_the_values_the_operator_writes(alerts: list[dict[str, Any]]) -> None:
    by_name = {a["alert"]: a for a in alerts}
    assert 'mevaas_operator_tenants{state!="Ready"}' in by_name["MevaasTenantsNotReady"]["expr"]
    assert "Ready" in mevaas_operator.metrics.STATES
    assert "mevaas_operator_drift_repaired_total" in by_name["MevaasTenantDriftRepaired"]["expr"]
    assert 'outcome="failed"' in by_name["MevaasReconcileFailing"]["expr"]
