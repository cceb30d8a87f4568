"""The deployment files say what the code does: the compose file is valid and registers our search
attributes; every alert rule names a metric the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import activities.notify
import activities.reconcile
import activities.retention
import rabbit.metrics
import webhook.callback
import webhook.refusal
import webhook.signature_auth
from payouts import search_attributes as sa

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.temporal.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
_LOADED = (activities.notify, activities.reconcile, activities.retention, rabbit.metrics, webhook.callback,
           webhook.refusal, webhook.signature_auth)


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


def test_every_alert_names_a_metric_the_code_exports() -> None:
    # Metric families by name; a counter's family name drops the `_total` its samples carry.
    exported = {metric.name for metric in REGISTRY.collect()}
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # label values are not metric names
        names = set(re.findall(r"\b((?:payout|portmone|webhook)_[a-z0-9_]+)\b", expr))
        assert names, rule["alert"]
        missing = {n for n in names if n not in exported and n.removesuffix("_total") not in exported}
        assert not missing, f"{rule['alert']} uses metrics the code does not export: {missing}"
