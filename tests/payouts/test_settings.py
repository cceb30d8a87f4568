"""Settings rules across sections: one bills.create attempt must outlast its Portmone call.

The rule holds in dev mode too (it is about correctness, not about credentials)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from portmone import PortmoneClient
from runtime.settings import (
    BILL_ATTEMPT_LEDGER_MARGIN_SECONDS,
    ConfigError,
    PayoutSettings,
    PortmoneSettings,
    Settings,
    load_settings,
)
from tests.cli_helpers import SETTING_PREFIXES

NAMES = (
    "PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS",
    "PORTMONE_CONNECT_TIMEOUT_SECONDS",
    "PORTMONE_WRITE_TIMEOUT_SECONDS",
    "PORTMONE_READ_TIMEOUT_SECONDS",
)


def _portmone(connect: float = 2, write: float = 3, read: float = 5) -> PortmoneSettings:
    return PortmoneSettings(
        login="l", password=SecretStr("p"), connect_timeout_seconds=connect, write_timeout_seconds=write,
        read_timeout_seconds=read,
    )


@pytest.fixture
def no_setting_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env
    return monkeypatch


def test_the_defaults_keep_the_rule() -> None:
    portmone, payout = PortmoneSettings(), PayoutSettings()
    assert portmone.write_timeout_seconds == 10.0
    assert portmone.total_timeout_seconds == 5.0 + 10.0 + 20.0
    assert payout.bill_attempt_timeout_seconds > portmone.total_timeout_seconds + BILL_ATTEMPT_LEDGER_MARGIN_SECONDS
    assert BILL_ATTEMPT_LEDGER_MARGIN_SECONDS == 10.0
    Settings(portmone=portmone, payout=payout)


@pytest.mark.parametrize("env", ["dev", "production"])
def test_an_attempt_timeout_within_the_budget_plus_margin_is_refused(env: str) -> None:
    # Budget 2 + 3 + 5 = 10 s, plus 10 s margin: the attempt needs more than 20 s.
    Settings(env=env, portmone=_portmone(), payout=PayoutSettings(bill_attempt_timeout_seconds=21))
    for attempt in (20, 12, 1):
        with pytest.raises(ValidationError) as err:
            Settings(env=env, portmone=_portmone(), payout=PayoutSettings(bill_attempt_timeout_seconds=attempt))
        text = str(err.value)
        assert (
            f"PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS={attempt} must be greater than the Portmone call's total budget "
            "PORTMONE_CONNECT_TIMEOUT_SECONDS=2 + PORTMONE_WRITE_TIMEOUT_SECONDS=3 + "
            "PORTMONE_READ_TIMEOUT_SECONDS=5 = 10 s, plus 10 s for the ledger writes around the call "
            "(more than 20 s)"
        ) in text


@pytest.mark.parametrize(("connect", "write", "read"), [(11, 3, 5), (2, 12, 5), (2, 3, 14)])
def test_each_portmone_timeout_counts(connect: float, write: float, read: float) -> None:
    # Any one of the three raised by 9 s makes the budget 19 s, so the attempt needs more than 29 s.
    with pytest.raises(ValidationError, match="more than 29 s"):
        Settings(portmone=_portmone(connect, write, read), payout=PayoutSettings(bill_attempt_timeout_seconds=29))
    Settings(portmone=_portmone(connect, write, read), payout=PayoutSettings(bill_attempt_timeout_seconds=30))


def test_the_client_budget_is_the_settings_budget() -> None:
    portmone = _portmone(1.5, 2.5, 4)
    assert portmone.total_timeout_seconds == 8.0
    assert PortmoneClient.from_settings(portmone).total_timeout == portmone.total_timeout_seconds


def test_load_settings_names_the_variables_and_their_values(no_setting_env: pytest.MonkeyPatch) -> None:
    no_setting_env.setenv("PAYOUTS_ENV", "dev")
    no_setting_env.setenv("PORTMONE_WRITE_TIMEOUT_SECONDS", "70")
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert text.startswith("invalid settings:\n  - PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS=90 must be greater")
    for name, value in zip(NAMES, ("90", "5", "70", "20"), strict=True):
        assert f"{name}={value}" in text
    assert "more than 105 s" in text
    assert "Value error" not in text
    no_setting_env.setenv("PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS", "106")
    assert load_settings().payout.bill_attempt_timeout_seconds == 106


def test_field_errors_still_name_their_variable(no_setting_env: pytest.MonkeyPatch) -> None:
    no_setting_env.setenv("PORTMONE_WRITE_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigError, match="PORTMONE_WRITE_TIMEOUT_SECONDS: Input should be greater than 0"):
        load_settings()
