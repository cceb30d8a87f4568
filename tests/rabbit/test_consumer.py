"""`payouts consumer` against the real RabbitMQ and the whole stack on the Temporal dev server:
receipts from the queue end as payouts; duplicates, crashes, bad messages, a lost connection and an
unreachable Temporal lose nothing and pay nothing twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from console.publish import bad_messages, encode, good_message, new_run, publish
from payouts.models import payout_workflow_id
from rabbit.consumer import REASON_HEADER, ReceiptConsumer
from rabbit.contract import BODY_REASONS
from rabbit.main import build_consumer
from runtime.settings import RabbitSettings
from tests.cli_helpers import clean_env
from tests.faults import eventually
from tests.rabbit.clients import HeldStart, UnreachableFirst
from tests.rabbit.flow import consuming, counted, dead_lettered, drained, paid_once
from tests.rabbit.helpers import Broker, close_connection_named, rabbit_env
from tests.stack import TEST_PHONE, Stack, running_stack, settings_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


async def test_an_accepted_receipt_from_the_queue_ends_paid_and_another_status_starts_nothing(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    run = new_run()
    accepted, rejected = good_message(run, 1), good_message(run, 2, status="rejected")
    started, ignored = counted("started"), counted("ignored")
    await publish(rabbit, rabbit.intake_queue, [encode(rejected), encode(accepted)])

    async with consuming(stack, rabbit):
        await paid_once(stack, str(accepted["receipt_id"]))
        await drained(broker, rabbit.intake_queue)

    assert (counted("started") - started, counted("ignored") - ignored) == (1, 1)
    not_started = payout_workflow_id(str(rejected["receipt_id"]))
    assert [w async for w in stack.client.list_workflows(f'WorkflowId="{not_started}"')] == []
    assert await broker.count(rabbit.dead_letter_queue) == 0


async def test_a_paid_payout_from_the_queue_appears_on_bonus_events(
    dev_env: WorkflowEnvironment, tmp_path: Path, rabbit: RabbitSettings, broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bonus_queue = f"{rabbit.intake_queue}.bonus-events"
    # The stack's settings read these sections from the environment, as every process does.
    for name, value in {**rabbit_env(rabbit), "EVENTS_BONUS_QUEUE_ENABLED": "true",
                        "EVENTS_BONUS_QUEUE": bonus_queue}.items():
        monkeypatch.setenv(name, value)
    message = good_message(new_run(), 1)
    try:
        async with running_stack(dev_env.client, tmp_path, read_timeout=2.0, relay=True) as stack:
            assert stack.settings.events.bonus_queue_enabled
            await publish(rabbit, rabbit.intake_queue, [encode(message)])
            async with consuming(stack, rabbit):
                await paid_once(stack, str(message["receipt_id"]))
            got = await broker.take_all(bonus_queue, expected=2, timeout=60)
        assert [g.type for g in got] == ["payout_pending", "payout_success"]  # in order, each once
        for g in got:
            assert g.message_id == g.json()["event_id"]
            assert g.json()["payout_id"] == payout_workflow_id(str(message["receipt_id"]))
            assert TEST_PHONE not in g.body.decode()
        assert got[1].json()["status"] == "PAID" and got[1].json()["bill_id"]
    finally:
        await broker.delete([bonus_queue])


async def test_a_message_delivered_twice_and_a_consumer_killed_before_its_ack_pay_once(
    stack: Stack, rabbit: RabbitSettings, broker: Broker, tmp_path: Path
) -> None:
    message = encode(good_message(new_run(), 1))
    receipt_id = json.loads(message)["receipt_id"]
    await publish(rabbit, rabbit.intake_queue, [message, message])  # the bot delivered it twice
    one_at_a_time = rabbit.model_copy(update={"prefetch": 1})

    # A consumer process that dies (SIGKILL) right after Temporal started the payout, before its ack.
    env = clean_env(**settings_env(stack.settings), **rabbit_env(one_at_a_time), PYTHONPATH=str(REPO))
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.rabbit.crashing_consumer"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    await stack.client.get_workflow_handle(payout_workflow_id(receipt_id)).describe()  # it did start

    async def back_on_the_queue() -> bool:  # the unacknowledged message, beside its duplicate
        return await broker.count(rabbit.intake_queue) == 2

    await eventually(back_on_the_queue, timeout=30)

    existing = counted("existing")
    async with consuming(stack, one_at_a_time):
        await drained(broker, rabbit.intake_queue)
        await paid_once(stack, receipt_id)
    assert counted("existing") - existing == 2
    assert await broker.count(rabbit.dead_letter_queue) == 0


async def test_each_bad_message_is_dead_lettered_with_its_reason_and_nothing_is_lost(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    run = new_run()
    kinds = [reason.value for reason in BODY_REASONS]
    bad = bad_messages(run, kinds, rabbit.max_message_bytes)  # a conflicting duplicate comes with its original
    after = [("not accepted", encode(good_message(run, 1, status="rejected"))), ("good", encode(good_message(run, 2)))]
    sent = bad + after
    before = {o: counted(o) for o in ("started", "existing", "ignored", "dead_lettered", "retried")}
    reasons_before = {k: dead_lettered(k) for k in kinds}
    one_at_a_time = rabbit.model_copy(update={"prefetch": 1})  # in order: the good one comes last
    await publish(one_at_a_time, rabbit.intake_queue, [body for _, body in sent])

    async with consuming(stack, one_at_a_time):
        await drained(broker, rabbit.intake_queue)
        await paid_once(stack, str(good_message(run, 2)["receipt_id"]))
        dead = await broker.take_all(rabbit.dead_letter_queue, expected=len(kinds))

    assert sorted(d.headers[REASON_HEADER] for d in dead) == sorted(kinds)
    bad_bodies = {body for kind, body in bad if kind != "original"}
    assert {d.body for d in dead} == bad_bodies  # kept as they came
    for d in dead:
        assert TEST_PHONE not in json.dumps({k: str(v) for k, v in d.headers.items()})
    conflict = next(d for d in dead if d.headers[REASON_HEADER] == "conflicting_duplicate")
    assert "amount_kopecks" in str(conflict.headers["x-payouts-detail"])
    # Counted in = counted out: each message started a payout, was ignored, or was dead-lettered.
    out = {o: counted(o) - n for o, n in before.items()}
    assert out == {"started": 2, "existing": 0, "ignored": 1, "dead_lettered": len(kinds), "retried": 0}
    assert sum(out.values()) == len(sent)
    assert all(dead_lettered(k) - reasons_before[k] == 1 for k in kinds)


async def test_a_connection_cut_mid_stream_reconnects_and_the_backlog_drains(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    run = new_run()
    backlog = [good_message(run, i) for i in range(12)]
    await publish(rabbit, rabbit.intake_queue, [encode(m) for m in backlog])
    client = HeldStart(stack.client)
    stack.started.extend(payout_workflow_id(str(m["receipt_id"])) for m in backlog)

    async with consuming(stack, rabbit.model_copy(update={"prefetch": 2}), client) as consumer:
        await asyncio.wait_for(client.held.wait(), 20)  # a start made, its message not yet acknowledged
        assert await asyncio.to_thread(close_connection_named, consumer.name) == 1
        await eventually(lambda: _reconsuming(consumer), timeout=30)
        client.release.set()
        await drained(broker, rabbit.intake_queue)

        for m in backlog:  # each has its payout
            await stack.client.get_workflow_handle(payout_workflow_id(str(m["receipt_id"]))).describe()
    assert consumer.reconnects >= 1
    assert client.starts > len(backlog) - 1  # the held message came again and found its payout
    assert await broker.count(rabbit.dead_letter_queue) == 0


async def _reconsuming(consumer: ReceiptConsumer) -> bool:
    return consumer.reconnects >= 1 and consumer.consuming.is_set()


async def test_an_unreachable_temporal_sends_the_message_round_the_delay_queue_not_in_a_spin(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    message = good_message(new_run(), 1)
    client = UnreachableFirst(stack.client, times=2)
    retried = counted("retried")
    await publish(rabbit, rabbit.intake_queue, [encode(message)])

    async with consuming(stack, rabbit, client):
        await paid_once(stack, str(message["receipt_id"]))

    assert counted("retried") - retried == 2
    assert client.starts == 3  # two refusals a delay apart (RABBIT_RETRY_DELAY_SECONDS), then the start
    assert await broker.count(rabbit.retry_queue) == 0
    assert await broker.count(rabbit.intake_queue) == 0


async def test_payouts_consumer_stops_on_sigterm_after_acknowledging(
    stack: Stack, rabbit: RabbitSettings, broker: Broker, tmp_path: Path
) -> None:
    message = good_message(new_run(), 1)
    env = clean_env(**settings_env(stack.settings), **rabbit_env(rabbit))
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "consumer"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        await publish(rabbit, rabbit.intake_queue, [encode(message)])
        await paid_once(stack, str(message["receipt_id"]))
        await drained(broker, rabbit.intake_queue)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-2000:]
    assert "consumer stopped" in stderr
    assert TEST_PHONE not in stderr


async def test_a_stop_finishes_the_message_in_hand_and_takes_no_other(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    run = new_run()
    messages = [good_message(run, i) for i in range(3)]
    await publish(rabbit, rabbit.intake_queue, [encode(m) for m in messages])
    client = HeldStart(stack.client)
    settings = stack.settings.model_copy(update={"rabbit": rabbit.model_copy(update={"prefetch": 1})})
    consumer = build_consumer(settings, cast(Client, client))
    running = asyncio.create_task(consumer.run())
    await asyncio.wait_for(client.held.wait(), 20)

    consumer.stop()  # what SIGTERM does in `payouts consumer`
    await asyncio.sleep(0.5)
    assert not running.done()  # it waits for the message in hand
    client.release.set()
    await asyncio.wait_for(running, 30)

    first = payout_workflow_id(str(messages[0]["receipt_id"]))
    stack.started.append(first)
    await stack.client.get_workflow_handle(first).describe()
    assert client.starts == 1
    assert await broker.count(rabbit.intake_queue) == 2  # acknowledged the one in hand, took no other
