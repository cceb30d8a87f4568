"""The monitoring files say what the code does: every alert rule and dashboard panel names a metric the
code exports (the image and the compose file: tests/deploy)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from runtime import metrics

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "deploy" / "grafana"


# Temporal SDK metrics the rules and dashboards use (the worker exports them: Runtime(telemetry=...);
# tests/observability/test_scrape.py sees the first of them on a real worker's /metrics).
TEMPORAL_SDK = {
    "temporal_workflow_task_schedule_to_start_latency_seconds",
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_sticky_cache_size",
    "temporal_sticky_cache_hit_total",
    "temporal_sticky_cache_miss_total",
    "temporal_activity_execution_latency_seconds",
    "temporal_activity_execution_failed_total",
    "temporal_workflow_task_execution_failed_total",
    "temporal_request_failure_total",
    "temporal_num_pollers",
    "temporal_workflow_completed_total",
}
_METRIC = re.compile(r"\b((?:payout|portmone|webhook|temporal)_[a-z0-9_]+)\b")


def exported() -> set[str]:
    """Prometheus names the code exports: runtime.metrics (every metric of ours), the Temporal SDK's, and
    the recording rules."""
    names = set(metrics.EXPOSED) | TEMPORAL_SDK
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def unknown_metrics(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    names = set(_METRIC.findall(expr))
    known = exported()
    histogram = re.compile(r"_(bucket|count|sum)$")
    return {n for n in names if not {n, f"{n}_total", histogram.sub("", n)} & known}


def test_every_alert_names_a_metric_the_code_exports() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    alerts = [rule for rule in rules if "alert" in rule]
    assert len(alerts) >= 10
    for rule in alerts:
        assert _METRIC.search(rule["expr"]), rule["alert"]
        missing = unknown_metrics(rule["expr"])
        assert not missing, f"{rule['alert']} uses metrics the code does not export: {missing}"


def test_a_misspelt_metric_is_caught() -> None:
    assert unknown_metrics("sum(rate(portmone_requests_total[5m]))") == {"portmone_requests_total"}
    assert unknown_metrics('sum(rate(portmone_request_total{method="payout_x"}[5m]))') == set()


def test_the_three_required_alerts_are_there() -> None:
    alerts = {rule["alert"]: rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    assert "> 0.02" in alerts["PortmoneErrorRateHigh"]["expr"] and alerts["PortmoneErrorRateHigh"]["for"] == "5m"
    assert "histogram_quantile(0.95" in alerts["PortmoneCallbackLatencyHigh"]["expr"]
    assert "> 30" in alerts["PortmoneCallbackLatencyHigh"]["expr"]
    assert "portmone_v1_fallback_total" in alerts["PortmoneProtocolFallbackToV1"]["expr"]


@pytest.mark.parametrize("dashboard", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.name)
def test_every_dashboard_panel_queries_metrics_the_code_exports(dashboard: Path) -> None:
    doc = json.loads(dashboard.read_text())
    exprs = [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]
    assert exprs and doc["uid"] and doc["title"]
    for expr in exprs:
        assert _METRIC.search(expr), expr
        assert not unknown_metrics(expr), f"{dashboard.name}: {expr}"
