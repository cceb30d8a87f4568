"""The `payouts` command line as a user meets it: production starts refuse missing settings, the
sandbox answers a curl-style bills.create, submit reports errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from lxml import etree

from runtime import devdefaults
from tests.cli_helpers import clean_env, payouts
from tests.stack import free_port


def test_worker_refuses_a_production_start_and_names_every_missing_variable(tmp_path: Path) -> None:
    result = payouts("worker", env=clean_env(), cwd=tmp_path)

    assert result.returncode == 2
    for name in ("PORTMONE_LOGIN", "PORTMONE_PASSWORD", "PORTMONE_CERT_PATH", "PORTMONE_PAYEE_ID",
                 "PAYOUTS_FERNET_KEYS", "PAYOUTS_HMAC_KEY"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_values_are_named(tmp_path: Path) -> None:
    result = payouts("migrate", env=clean_env(PORTMONE_VERSION="3", LEDGER_ARCHIVE_RETENTION_DAYS="30"), cwd=tmp_path)

    assert result.returncode == 2
    assert "PORTMONE_VERSION" in result.stderr
    assert "LEDGER_ARCHIVE_RETENTION_DAYS" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_attempt_timeout_the_portmone_call_could_outlive_is_refused(tmp_path: Path) -> None:
    # Default budget 5 + 10 + 20 s plus the 10 s ledger margin: the attempt needs more than 45 s.
    production = payouts("worker", env=clean_env(PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS="45"), cwd=tmp_path)
    dev = payouts(
        "migrate", env=clean_env(PAYOUTS_ENV="dev", PORTMONE_READ_TIMEOUT_SECONDS="80"), cwd=tmp_path
    )

    for result, attempt, read, needed in ((production, "45", "20", "45"), (dev, "90", "80", "105")):
        assert result.returncode == 2
        for setting in (f"PAYOUT_BILL_ATTEMPT_TIMEOUT_SECONDS={attempt}", "PORTMONE_CONNECT_TIMEOUT_SECONDS=5",
                        "PORTMONE_WRITE_TIMEOUT_SECONDS=10", f"PORTMONE_READ_TIMEOUT_SECONDS={read}",
                        f"more than {needed} s"):
            assert setting in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / ".data").exists()


def test_migrate_creates_the_sqlite_ledger(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "ledger.db"
    result = payouts("migrate", env=clean_env(LEDGER_URL=f"sqlite+aiosqlite:///{db}"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert db.is_file()
    assert "ledger at head" in result.stdout


def test_sandbox_command_answers_bills_create(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "sandbox", "--port", str(port)],
        env=clean_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/directcash/"
        deadline = time.monotonic() + 20
        resp = None
        while time.monotonic() < deadline:
            try:
                resp = httpx.post(url, data={
                    "method": "bills.create", "login": devdefaults.DEV_PORTMONE_LOGIN,
                    "password": devdefaults.DEV_PORTMONE_PASSWORD, "version": "2",
                    "payeeId": devdefaults.DEV_PAYEE_ID, "contractNumber": "380001234567",
                    "amount": "25.00", "currency": "UAH", "comment": "cli test",
                })
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert resp is not None and resp.status_code == 200
        root = etree.fromstring(resp.content)
        assert root.tag == "rsp" and root.get("status") == "ok"
        assert root.findtext("bill/billId")
        assert root.findtext("bill/amount") == "25.00"
    finally:
        proc.terminate()
        proc.wait(20)


def test_submit_without_a_webhook_says_so(tmp_path: Path) -> None:
    result = payouts(
        "submit", "--receipt-id", "R-1", "--telegram-id", "1", "--msisdn", "380001234567", "--amount-kopecks", "2500",
        "--webhook-url", f"http://127.0.0.1:{free_port()}", env=clean_env(), cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "the webhook is not answering at http://127.0.0.1:" in result.stderr and "`payouts dev`" in result.stderr
    assert "Traceback" not in result.stderr


def test_sandbox_seed_flag_wins_over_the_setting_and_is_reported(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "sandbox", "--port", str(port), "--seed", "42"],
        env=clean_env(SANDBOX_SEED="5"), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_sandbox/health").json()
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert health is not None and health["seed"] == 42
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "sandbox seed 42" in out

    refused = payouts("sandbox", "--seed", "-1", env=clean_env(), cwd=tmp_path)
    assert refused.returncode == 2
    assert "not a non-negative integer" in refused.stderr
