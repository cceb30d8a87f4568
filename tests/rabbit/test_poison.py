"""Poison messages on the real broker: none of them stalls intake. Each hostile message is published
raw among good ones; the good ones behind it are paid, the hostile one lands on the dead-letter
queue within a bounded time, with its reason, and no phone number reaches a header or the log."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

import aio_pika
import pytest
from pamqp import commands
from temporalio.client import Client

from console.publish import encode, good_message, new_run
from payouts.models import payout_workflow_id
from rabbit.consumer import DETAIL_HEADER, FAILURES_HEADER, REASON_HEADER, SOURCE_HEADER, ReceiptConsumer
from rabbit.handler import Handling, ReceiptHandler
from rabbit.main import build_consumer
from runtime.settings import RabbitSettings
from tests.rabbit.flow import consuming, counted, dead_lettered, drained, paid_once
from tests.rabbit.helpers import Broker, Got
from tests.rabbit.hostile import UNDECODABLE, near_the_frame_limit, publish_raw, undecodable
from tests.stack import Stack
from tests.stack_checks import workflow_exists

pytestmark = [pytest.mark.rabbitmq, pytest.mark.integration]

# The poison must be gone from the intake queue within this (the good messages are paid meanwhile).
POISON_BOUND_SECONDS = 20.0


def sound(message: dict[str, object]) -> tuple[bytes, commands.Basic.Properties]:
    body = encode(message)
    return body, aio_pika.Message(body, content_type="application/json", message_id=str(message["receipt_id"]),
                                  delivery_mode=aio_pika.DeliveryMode.PERSISTENT).properties


async def dead_letters(broker: Broker, rabbit: RabbitSettings, expected: int) -> tuple[list[Got], float]:
    """The dead letters, once `expected` are there, and how long that took."""
    started = time.monotonic()
    got = await broker.take_all(rabbit.dead_letter_queue, expected=expected, timeout=POISON_BOUND_SECONDS)
    return got, time.monotonic() - started


def no_phone(text: str) -> None:
    digits = "".join(ch for ch in text if ch.isdigit())
    assert "0001061" not in digits and "380000" not in digits, text


async def test_messages_the_client_cannot_decode_are_dead_lettered_and_the_ones_behind_them_are_paid(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    run = new_run()
    before, after = [good_message(run, i) for i in range(2)], [good_message(run, i) for i in range(2, 4)]
    poisons = [undecodable(kind) for kind in UNDECODABLE]
    body = encode(good_message(run, 99))  # a sound receipt, in a message whose properties are not
    await publish_raw(rabbit, [*map(sound, before), *((body, p) for _, p in poisons), *map(sound, after)])
    dead_before = dead_lettered("undecodable_properties")

    async with consuming(stack, rabbit) as consumer:
        dead, took = await dead_letters(broker, rabbit, expected=len(poisons))
        for message in before + after:
            await paid_once(stack, str(message["receipt_id"]))
        await drained(broker, rabbit.intake_queue)

    assert consumer.reconnects == 0  # the connection never dropped
    assert took < POISON_BOUND_SECONDS
    assert sorted(d.message_id or "" for d in dead) == sorted(mid for mid, _ in poisons)
    details = {d.message_id: str(d.headers[DETAIL_HEADER]) for d in dead}
    for (kind, (_, said)), (mid, _) in zip(UNDECODABLE.items(), poisons, strict=True):
        assert said in details[mid], kind
    for d in dead:
        assert d.headers[REASON_HEADER] == "undecodable_properties"
        assert d.headers[SOURCE_HEADER] == rabbit.intake_queue
        assert d.body == body and d.content_type == "application/json"  # what could be read is kept
        assert "x-payouts-undecodable" not in d.headers
    assert dead_lettered("undecodable_properties") - dead_before == len(poisons)
    assert not await workflow_exists(stack.client, payout_workflow_id(str(good_message(run, 99)["receipt_id"])))


async def test_a_dead_letter_never_outgrows_the_frame_limit_its_message_nearly_filled(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    run = new_run()
    behind = good_message(run, 1)
    big = near_the_frame_limit(b'{"version": 1, "status": "accepted"', frame_max=131072, message_id="big-1")

    await publish_raw(rabbit, [(big.body, big.properties), sound(behind)])
    async with consuming(stack, rabbit) as consumer:
        [dead], took = await dead_letters(broker, rabbit, expected=1)
        await paid_once(stack, str(behind["receipt_id"]))

    assert consumer.reconnects == 0 and took < POISON_BOUND_SECONDS
    assert (dead.message_id, dead.headers[REASON_HEADER]) == ("big-1", "invalid_json")
    assert "x-padding" not in dead.headers  # left out of the copy, and the reason says so
    detail = str(dead.headers[DETAIL_HEADER])
    assert detail.startswith("body is not valid UTF-8 JSON; 1 of the message's headers left out of this copy")
    assert "frame limit of 131072 bytes): x-padding" in detail


class DiesOn:
    """A handler that, on the poison body, kills the consumer's connection before answering: what a
    message the process cannot survive looks like from the broker (a crash, an out-of-memory kill)."""

    def __init__(self, inner: ReceiptHandler, poison: bytes) -> None:
        self._inner, self._poison = inner, poison
        self.consumer: ReceiptConsumer | None = None
        self.deaths = 0

    async def handle(self, body: bytes) -> Handling:
        if body == self._poison:
            assert self.consumer is not None and self.consumer.connection is not None
            self.deaths += 1
            await self.consumer.connection.close()
            raise RuntimeError("test: the process died on this message")
        return await self._inner.handle(body)


async def test_a_message_the_consumer_dies_on_is_dead_lettered_by_the_broker_after_the_delivery_limit(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    limited = rabbit.model_copy(update={"delivery_limit": 3, "prefetch": 4})
    run = new_run()
    poison = json.dumps({"version": 1, "status": "accepted", "poison": run}).encode()
    good = [good_message(run, i) for i in range(8)]  # in the poison's prefetch window, and after it
    await publish_raw(limited, [sound(good[0]), (poison, sound(good[1])[1]), *map(sound, good[1:])])

    settings = stack.settings.model_copy(update={"rabbit": limited})
    real = build_consumer(settings, cast(Client, stack.client))
    handler = DiesOn(cast(ReceiptHandler, real._handler), poison)
    consumer = ReceiptConsumer(limited, cast(ReceiptHandler, handler))
    handler.consumer = consumer
    task = asyncio.create_task(consumer.run())
    try:
        [dead], took = await dead_letters(broker, limited, expected=1)
        for message in good:
            await paid_once(stack, str(message["receipt_id"]))
        await drained(broker, limited.intake_queue)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 60)

    assert dead.body == poison and took < POISON_BOUND_SECONDS
    # Dead-lettered by the broker, not by us: its reason is RabbitMQ's own.
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert dead.headers["x-first-death-queue"] == limited.intake_queue
    assert REASON_HEADER not in dead.headers
    assert handler.deaths == limited.delivery_limit + 1  # delivered once, then `limit` times more
    # The good messages that came back with it, one at a time, never joined it.
    assert await broker.count(limited.dead_letter_queue) == 0


class AlwaysRaisesOn:
    def __init__(self, inner: ReceiptHandler, poison: bytes) -> None:
        self._inner, self._poison = inner, poison
        self.calls = 0

    async def handle(self, body: bytes) -> Handling:
        if body == self._poison:
            self.calls += 1
            raise KeyError("+380 00 000 10 61")  # a bug whose message quotes the client's data
        return await self._inner.handle(body)


async def test_handling_that_keeps_raising_is_dead_lettered_after_the_last_try(
    stack: Stack, rabbit: RabbitSettings, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    capped = rabbit.model_copy(update={"max_handling_failures": 3})
    run = new_run()
    poison, behind = encode(good_message(run, 1)), good_message(run, 2)
    await publish_raw(capped, [(poison, sound(good_message(run, 1))[1]), sound(behind)])
    failed, retried = counted("failed"), counted("retried")

    settings = stack.settings.model_copy(update={"rabbit": capped})
    real = build_consumer(settings, cast(Client, stack.client))
    handler = AlwaysRaisesOn(cast(ReceiptHandler, real._handler), poison)
    consumer = ReceiptConsumer(capped, cast(ReceiptHandler, handler))
    task = asyncio.create_task(consumer.run())
    try:
        with caplog.at_level(logging.INFO, logger="payouts"):
            [dead], took = await dead_letters(broker, capped, expected=1)
            await paid_once(stack, str(behind["receipt_id"]))
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 60)

    assert handler.calls == 3 and took < POISON_BOUND_SECONDS
    # Round the delay queue twice, dead-lettered on the third: counted apart from a Temporal outage's trips.
    assert (counted("failed") - failed, counted("retried") - retried) == (2, 0)
    assert dead.body == poison
    assert (dead.headers[REASON_HEADER], dead.headers[FAILURES_HEADER]) == ("handling_failed", 3)
    assert dead.headers[DETAIL_HEADER] == "handling failed 3 times (KeyError); the consumer's log has each"
    assert await broker.count(capped.retry_queue) == 0 and await broker.count(capped.intake_queue) == 0
    logged = caplog.text
    assert "message handling failed (3 of 3 tries)" in logged and "KeyError" in logged
    no_phone(logged)


@pytest.mark.parametrize("as_written", ["+380 00 000 10 61", "+38 (000) 000-10-61", "000.000.10.61"])
async def test_a_phone_as_a_field_name_reaches_neither_the_dead_letter_headers_nor_the_log(
    stack: Stack, rabbit: RabbitSettings, broker: Broker, caplog: pytest.LogCaptureFixture, as_written: str
) -> None:
    message = {**good_message(new_run(), 1), as_written: "x"}
    await publish_raw(rabbit, [sound(message)])

    with caplog.at_level(logging.DEBUG, logger="payouts"):
        async with consuming(stack, rabbit):
            [dead], _ = await dead_letters(broker, rabbit, expected=1)

    assert dead.headers[REASON_HEADER] == "schema_error"
    assert "Extra inputs are not permitted" in str(dead.headers[DETAIL_HEADER])
    no_phone(json.dumps({k: str(v) for k, v in dead.headers.items()}))
    assert "message dead-lettered: schema_error" in caplog.text
    no_phone(caplog.text)


async def test_bodies_against_the_contract_are_dead_lettered_with_the_documented_reason(
    stack: Stack, rabbit: RabbitSettings, broker: Broker
) -> None:
    run = new_run()
    cases: dict[str, tuple[bytes, str]] = {
        "utf-16": (json.dumps(good_message(run, 1)).encode("utf-16"), "invalid_json"),
        "accepted_at number": (encode(good_message(run, 2, accepted_at=1764237600)), "schema_error"),
        "accepted_at digits": (encode(good_message(run, 3, accepted_at="1764237600")), "invalid_payload"),
        "lone surrogate name": (encode({**good_message(run, 4), "\ud800": 1}), "schema_error"),
    }
    await publish_raw(rabbit, [(body, sound(good_message(run, 0))[1]) for body, _ in cases.values()])
    async with consuming(stack, rabbit):
        dead, _ = await dead_letters(broker, rabbit, expected=len(cases))

    by_body: dict[bytes, Any] = {d.body: d.headers[REASON_HEADER] for d in dead}
    assert {name: by_body.get(body) for name, (body, _) in cases.items()} == {
        name: reason for name, (_, reason) in cases.items()
    }
    for i in range(1, 5):  # nothing started
        assert not await workflow_exists(stack.client, payout_workflow_id(str(good_message(run, i)["receipt_id"])))
