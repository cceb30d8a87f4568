"""The Prometheus files in deploy/ pass promtool: the rules and the scrape config are valid, and the
key alerts fire (and stay quiet) on series shaped like ours (deploy/prometheus/tests/alerts_test.yml).

promtool comes from Debian's `prometheus` package (scripts/test.sh installs it when missing);
PAYOUTS_SKIP_PROMTOOL=1 skips these tests explicitly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        if os.environ.get("PAYOUTS_SKIP_PROMTOOL") == "1":
            pytest.skip("PAYOUTS_SKIP_PROMTOOL=1")
        pytest.fail("promtool is not installed: `apt-get install prometheus` (scripts/test.sh does it)", pytrace=False)
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_scrape_config() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(PROMETHEUS / "tests" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    # The same tests against rules whose error-rate threshold is 20 % instead of 2 %: they must fail.
    broken = tmp_path / "alerts.yml"
    broken.write_text((PROMETHEUS / "alerts.yml").read_text().replace("> 0.02", "> 0.2", 1))
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "alerts_test.yml").write_text((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    result = promtool("test", "rules", str(tests / "alerts_test.yml"))
    assert result.returncode != 0
    assert "PortmoneErrorRateHigh" in result.stdout + result.stderr


# ---- every alert on a counter sees the counter's first event; every alert links a section ----------

ALERTS = PROMETHEUS / "alerts.yml"
ROOT = PROMETHEUS.parents[1]
# Alerts on histograms: their series appear with the first observation (OpenTelemetry has no empty
# histogram), and these alerts judge a quantile or a share over minutes (`for:`), never one event.
_ON_HISTOGRAMS = {"PortmoneCallbackLatencyHigh", "WebhookServerErrors", "TemporalScheduleToStartHigh"}


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_every_alert_on_a_counter_is_tested_on_a_series_that_starts_absent() -> None:
    """For each increase()/rate() alert, a promtool test whose input series is absent at first (no
    process yet), then appears, and which expects the alert to fire."""
    tests = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())["tests"]
    fired_from_absent = set()
    for case in tests:
        starts_absent = any(series["values"].startswith("_") for series in case["input_series"])
        if starts_absent:
            fired_from_absent |= {t["alertname"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    on_counters = {name for name, rule in _alerts().items() if re.search(r"\b(increase|rate)\(", rule["expr"])}
    missing = on_counters - _ON_HISTOGRAMS - fired_from_absent
    assert not missing, f"no absent-then-present promtool test fires {sorted(missing)}"
    assert "TemporalWorkflowTaskFailures" in fired_from_absent


def test_a_series_born_at_its_first_event_hides_that_event(tmp_path: Path) -> None:
    """Why our counters start at zero: the fallback test with the series appearing at 1 (its first event)
    instead of at 0 when the worker starts fails, as PortmoneProtocolFallbackToV1 never fires."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    original = (PROMETHEUS / "tests" / "alerts_test.yml").read_text()
    born_late = original.replace("values: '_x2 0 0 1 1 1'", "values: '_x4 1 1 1'")
    assert born_late != original
    (tests / "alerts_test.yml").write_text(born_late)
    result = promtool("test", "rules", str(tests / "alerts_test.yml"))
    assert result.returncode != 0
    assert "PortmoneProtocolFallbackToV1" in result.stdout + result.stderr


def _anchors(markdown: str) -> set[str]:
    """The anchors a Markdown page offers: explicit `<a id>`s and GitHub's slugs of its headings."""
    ids = set(re.findall(r'<a id="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(slug)
    return ids


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    alerts = _alerts()
    assert len(alerts) >= 19
    for name, rule in alerts.items():
        url = rule["annotations"].get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert path and anchor, f"{name}: runbook_url {url!r} names no page#section"
        page = ROOT / path
        assert page.is_file(), f"{name}: {path} does not exist"
        assert anchor in _anchors(page.read_text()), f"{name}: {path} has no section #{anchor}"


def test_a_runbook_link_to_a_missing_section_is_caught() -> None:
    assert "portmoneerrorratehigh" in _anchors("## PortmoneErrorRateHigh\n")
    assert "nothing-here" not in _anchors("## PortmoneErrorRateHigh\n")


# ---- Alertmanager: the shipped route, its receivers filled in from the environment ---------------------

ALERTMANAGER = ROOT / "deploy" / "alertmanager"


def render_alertmanager(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """deploy/alertmanager/start.sh with a stand-in executable (`true`): the filled-in file only."""
    return subprocess.run(
        ["sh", str(ALERTMANAGER / "start.sh")], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "ALERTMANAGER_BIN": "true",
             "ALERTMANAGER_RENDERED": str(tmp_path / "alertmanager.yml"), **env},
    )


def test_the_alertmanager_config_filled_from_the_environment_passes_amtool(tmp_path: Path) -> None:
    page, ticket = "https://oncall.example/hooks/page?key=a&team=payouts", "https://oncall.example/hooks/ticket"
    result = render_alertmanager(tmp_path, ALERTMANAGER_PAGE_WEBHOOK_URL=page, ALERTMANAGER_TICKET_WEBHOOK_URL=ticket)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    receivers = {r["name"]: r["webhook_configs"][0]["url"] for r in config["receivers"]}
    assert receivers == {"page": page, "ticket": ticket}
    assert config["route"]["receiver"] == "ticket"
    assert config["route"]["routes"][0]["matchers"] == ['severity="page"']
    assert config["route"]["routes"][0]["receiver"] == "page"
    assert oct((tmp_path / "alertmanager.yml").stat().st_mode & 0o777) == "0o600"  # the URLs are secrets
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed: `apt-get install prometheus-alertmanager` (scripts/test.sh does it)")
    checked = subprocess.run([amtool, "check-config", str(tmp_path / "alertmanager.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    severities = {rule["labels"]["severity"] for rule in _alerts().values()}
    assert severities == {"page", "ticket"}  # every alert reaches one of the two receivers by name


def test_alertmanager_does_not_start_without_a_receiver(tmp_path: Path) -> None:
    result = render_alertmanager(tmp_path, ALERTMANAGER_PAGE_WEBHOOK_URL="https://oncall.example/hooks/page")
    assert result.returncode != 0
    assert "ALERTMANAGER_TICKET_WEBHOOK_URL is not set" in result.stderr
