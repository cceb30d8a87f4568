"""The Prometheus files in deploy/ pass promtool: the rules and the scrape config are valid, and the
key alerts fire (and stay quiet) on series shaped like ours (deploy/prometheus/tests/alerts_test.yml).

promtool comes from Debian's `prometheus` package (scripts/test.sh installs it when missing);
PAYOUTS_SKIP_PROMTOOL=1 skips these tests explicitly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
