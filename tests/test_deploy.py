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


# The Temporal SDK's metrics as the payouts processes export them (Core's buffer through
# runtime.telemetry: counters end in _total, durations are seconds): the ones a worker shows after a
# payout (tests/observability/test_scrape.py reads them on a real worker's /metrics) ...
TEMPORAL_SDK_AFTER_A_PAYOUT = {
    "temporal_request_total",
    "temporal_request_latency_seconds",
    "temporal_long_request_total",
    "temporal_long_request_latency_seconds",
    "temporal_workflow_completed_total",
    "temporal_workflow_endtoend_latency_seconds",
    "temporal_workflow_task_queue_poll_succeed_total",
    "temporal_workflow_task_schedule_to_start_latency_seconds",
    "temporal_workflow_task_execution_latency_seconds",
    "temporal_workflow_task_replay_latency_seconds",
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_activity_execution_latency_seconds",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_num_pollers",
    "temporal_sticky_cache_size",
    "temporal_sticky_cache_hit_total",
}
# ... and the ones Core creates with their first failure, miss or empty poll.
TEMPORAL_SDK_ON_FIRST_EVENT = {
    "temporal_request_failure_total",
    "temporal_long_request_failure_total",
    "temporal_workflow_failed_total",
    "temporal_workflow_task_execution_failed_total",
    "temporal_workflow_task_queue_poll_empty_total",
    "temporal_activity_execution_failed_total",
    "temporal_activity_poll_no_task_total",
    "temporal_sticky_cache_miss_total",
    "temporal_sticky_cache_total_forced_eviction_total",
}
TEMPORAL_SDK = TEMPORAL_SDK_AFTER_A_PAYOUT | TEMPORAL_SDK_ON_FIRST_EVENT
# The Temporal server's own metrics (the temporal-server job): the ones its dev server shows right after
# start (tests/observability/test_dashboards.py scrapes one), and the ones that come with their first
# error or ended workflow.
TEMPORAL_SERVER_AT_START = {
    "service_requests", "service_latency", "persistence_requests", "persistence_latency", "action",
    "task_latency_queue", "num_goroutines", "memory_heap", "restarts",
}
TEMPORAL_SERVER_ON_FIRST_EVENT = {
    "service_error_with_type", "persistence_error_with_type", "workflow_success", "workflow_failed",
    "workflow_terminate", "workflow_timeout", "workflow_cancel",
}
# What every payouts process exports besides (prometheus_client's process collector).
PROCESS = {"process_cpu_seconds_total", "process_resident_memory_bytes"}
_METRIC = re.compile(r"\b((?:payout|portmone|webhook|temporal)_[a-z0-9_]+)\b")
_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "by", "without",
    "on", "ignoring", "or", "and", "unless", "offset", "vector", "scalar", "time", "label_replace",
    "absent_over_time", "absent", "bool", "le", "group_left", "group_right", "inf",
}


def exported() -> set[str]:
    """Prometheus names the code exports: runtime.metrics (every metric of ours), the Temporal SDK's and
    server's, the process collector's, and the recording rules."""
    names = set(metrics.EXPOSED) | TEMPORAL_SDK | TEMPORAL_SERVER_AT_START | TEMPORAL_SERVER_ON_FIRST_EVENT | PROCESS
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers, `by (...)`
    lists, ranges, numbers and PromQL's own words are taken out."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b\d[\w.]*", " ", expr)  # numbers and durations (offset 10m)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w.lower() not in _PROMQL_WORDS and not w.startswith("$")}


def unknown_metrics(expr: str) -> set[str]:
    known = exported()
    histogram = re.compile(r"_(bucket|count|sum)$")
    return {n for n in metric_names(expr) if not {n, histogram.sub("", n)} & known}


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
    assert unknown_metrics("sum by (operation) (rate(service_request[$__rate_interval]))") == {"service_request"}
    assert unknown_metrics('temporal_request{namespace=~"$namespace"}') == {"temporal_request"}  # Core's own name
    assert metric_names("histogram_quantile(0.95, sum by (le, x) (rate(a_seconds_bucket[5m]))) > 30") == {
        "a_seconds_bucket"}


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
    variables = [v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    assert exprs and doc["uid"] and doc["title"]
    for expr in exprs:
        assert metric_names(expr), expr
        assert not unknown_metrics(expr), f"{dashboard.name}: {expr}"
    for query in variables:
        name = re.fullmatch(r"label_values\((\w+), \w+\)", query)
        assert name and not unknown_metrics(name[1]), f"{dashboard.name}: variable {query}"
    assert len({doc["uid"] for doc in map(json.loads, map(Path.read_text, DASHBOARDS.glob("*.json")))}) == len(
        list(DASHBOARDS.glob("*.json")))


def test_the_temporal_dashboards_filter_by_namespace() -> None:
    """Temporal's SDK dashboard has a `$namespace` variable that every query filters by; ours too."""
    for name in ("temporal-sdk.json", "temporal-server.json"):
        doc = json.loads((DASHBOARDS / name).read_text())
        assert "namespace" in {v["name"] for v in doc["templating"]["list"]}, name
    sdk = json.loads((DASHBOARDS / "temporal-sdk.json").read_text())
    for panel in sdk["panels"]:
        for target in panel.get("targets", []):
            if "temporal_" in target["expr"]:
                assert 'namespace=~"$namespace"' in target["expr"], (panel["title"], target["expr"])
