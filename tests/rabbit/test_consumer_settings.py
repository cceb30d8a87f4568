"""`payouts consumer` refuses to start on settings it cannot work with, naming the variables."""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import clean_env, payouts


def test_a_production_start_without_a_broker_names_rabbit_url(tmp_path: Path) -> None:
    result = payouts("consumer", env=clean_env(), cwd=tmp_path)

    assert result.returncode == 2
    assert "payouts consumer cannot start in production" in result.stderr
    assert "RABBIT_URL is not set" in result.stderr and "PAYOUTS_FERNET_KEYS" in result.stderr
    assert "Traceback" not in result.stderr


def test_rules_across_the_queue_settings_are_named(tmp_path: Path) -> None:
    same = payouts("consumer", env=clean_env(RABBIT_RETRY_QUEUE="receipt.accepted"), cwd=tmp_path)
    silent = payouts("consumer", env=clean_env(EVENTS_USER_CHANNEL="bonus_events"), cwd=tmp_path)

    assert same.returncode == 2
    assert "RABBIT_INTAKE_QUEUE, RABBIT_DEAD_LETTER_QUEUE and RABBIT_RETRY_QUEUE must differ" in same.stderr
    assert silent.returncode == 2
    assert "EVENTS_USER_CHANNEL=bonus_events needs EVENTS_BONUS_QUEUE_ENABLED=true" in silent.stderr
    assert "Traceback" not in same.stderr + silent.stderr
