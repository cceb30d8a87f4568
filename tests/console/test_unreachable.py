"""A part of the stack is down: each `payouts` command says which part, at which address, and how to
start it; exit status 1, no traceback, none of the transport's own words."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.devdefaults import dev_environment
from tests.cli_helpers import clean_env, payouts
from tests.stack import free_port

TRANSPORT_WORDS = ("Traceback", "tonic", "Errno", "ConnectError(", "RuntimeError")

OPS_COMMANDS = [
    ("ops", "list", "--dev"),
    ("ops", "show", "R-1", "--dev"),
    ("ops", "retry", "R-1", "--dev", "--operator", "olena", "--reason", "checked"),
    ("ops", "mark-paid", "R-1", "--dev", "--operator", "olena", "--reason", "paid", "--reference", "P-1"),
    ("ops", "cancel", "R-1", "--dev", "--operator", "olena", "--reason", "duplicate"),
    ("ops", "export", "--dev"),
    ("schedules", "--dev"),
]


def assert_plain(stderr: str) -> None:
    assert "`payouts dev`" in stderr, stderr
    for word in TRANSPORT_WORDS:
        assert word not in stderr, stderr


@pytest.mark.parametrize("argv", OPS_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_ops_commands_name_temporal_and_the_ledger_when_neither_answers(argv: tuple[str, ...], tmp_path: Path) -> None:
    temporal = f"127.0.0.1:{free_port()}"

    result = payouts(*argv, env=clean_env(TEMPORAL_ADDRESS=temporal), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert f"error: Temporal is not answering at {temporal} (connection refused)." in result.stderr
    ledger_file = tmp_path / ".data" / "ledger.db"
    assert f"error: the ledger is not answering at sqlite+aiosqlite:///{ledger_file} (no ledger file" in result.stderr
    assert f"no running `payouts dev` recorded in {tmp_path / '.data' / 'dev-stack.json'}" in result.stderr
    assert_plain(result.stderr)
    assert not (tmp_path / ".data").exists()  # no empty ledger left where nobody runs `payouts dev`


def test_migrate_names_the_database_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql+asyncpg://payouts:not-to-be-shown@127.0.0.1:{port}/payouts"

    result = payouts("migrate", env=clean_env(LEDGER_URL=url), cwd=tmp_path)

    assert result.returncode == 1
    assert (f"error: the ledger is not answering at postgresql+asyncpg://payouts:***@127.0.0.1:{port}/payouts "
            "(connection refused).") in result.stderr
    assert "not-to-be-shown" not in result.stderr + result.stdout
    assert_plain(result.stderr)


@pytest.mark.parametrize("command", ["worker", "webhook"])
def test_services_name_temporal_when_it_does_not_answer(command: str, tmp_path: Path) -> None:
    temporal = f"127.0.0.1:{free_port()}"
    env = clean_env(**dev_environment(sandbox_url=f"http://127.0.0.1:{free_port()}",
                                      webhook_url=f"http://127.0.0.1:{free_port()}", data_dir=str(tmp_path)))
    env.update(TEMPORAL_ADDRESS=temporal, WEBHOOK_PORT=str(free_port()))

    result = payouts(command, env=env, cwd=tmp_path)

    assert result.returncode == 1, result.stderr  # not 134: no abort in the interpreter's teardown
    assert f"error: Temporal is not answering at {temporal} (connection refused)." in result.stderr
    assert_plain(result.stderr)


def test_submit_names_the_webhook(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = payouts("submit", "--receipt-id", "R-1", "--telegram-id", "1", "--msisdn", "380001234567",
                     "--amount-kopecks", "2500", "--webhook-url", url, env=clean_env(), cwd=tmp_path)

    assert result.returncode == 1
    assert f"error: the webhook is not answering at {url} (connection refused)." in result.stderr
    assert_plain(result.stderr)
