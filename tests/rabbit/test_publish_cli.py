"""`payouts publish` puts sample messages on the queue: good ones, and one of each bad kind."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rabbit.contract import BODY_REASONS
from runtime.settings import RabbitSettings
from tests.cli_helpers import clean_env, payouts
from tests.rabbit.helpers import Broker, rabbit_env

pytestmark = pytest.mark.rabbitmq


async def test_publish_puts_good_and_every_kind_of_bad_message_on_the_intake_queue(
    rabbit: RabbitSettings, broker: Broker, tmp_path: Path
) -> None:
    env = clean_env(**rabbit_env(rabbit))
    result = await asyncio.to_thread(payouts, "publish", "--count", "2", "--bad", "all", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    kinds = [reason.value for reason in BODY_REASONS]
    sent = 2 + len(kinds) + 1  # a conflicting duplicate comes with its original
    assert f"published {sent} message(s) to {rabbit.intake_queue}" in result.stdout
    assert "guest:guest" not in result.stdout
    got = await broker.take_all(rabbit.intake_queue, expected=sent)
    assert len(got) == sent
    good = [json.loads(g.body) for g in got[:2]]
    assert all(m["version"] == 1 and m["status"] == "accepted" for m in good)
    assert all(g.delivery_mode == 2 and g.message_id for g in got)


async def test_publish_refuses_an_unknown_kind(tmp_path: Path) -> None:
    result = await asyncio.to_thread(payouts, "publish", "--bad", "wrong", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown --bad kind wrong" in result.stderr
