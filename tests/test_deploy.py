"""The deployment files say what the code does: the compose file is valid and registers our search
attributes; every alert rule and dashboard panel names a metric the code exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from payouts import metrics
from payouts import search_attributes as sa

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.temporal.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "deploy" / "grafana"


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or "check-jsonschema"
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True, timeout=60
    )


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(COMPOSE.read_text().replace("    ports:\n      - \"7233:7233\"", "    ports: 7233", 1))
    assert check_compose(broken).returncode != 0


def test_compose_registers_exactly_our_search_attributes_and_holds_no_secret() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    command = " ".join(doc["services"]["register-search-attributes"]["command"])
    registered = dict(re.findall(r"--name (\w+) --type (\w+)", command))
    expected = {key.name: {"KEYWORD": "Keyword", "INT": "Int"}[key.indexed_value_type.name] for key in sa.ALL}
    assert registered == expected
    for service in doc["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if "PASSWORD" in name or "PWD" in name:
                assert str(value).startswith("${") and ":?" in str(value), f"{name} must come from the environment"


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
    """Prometheus names the code exports: payouts.metrics (every metric of ours), the Temporal SDK's, and
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
