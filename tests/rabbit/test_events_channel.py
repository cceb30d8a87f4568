"""The bonus.events channel against the real broker: what the bot's gateway reads off the queue."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from payouts.events import ChannelUnavailable, EventChannel, Outgoing, PayoutEvent, PayoutEventKind
from payouts.status import PayoutStatus
from rabbit.events_channel import BonusEventsChannel
from runtime.settings import RabbitSettings
from tests.rabbit.helpers import Broker
from tests.stack import TEST_PHONE, free_port

pytestmark = pytest.mark.rabbitmq


def paid_event(**overrides: object) -> PayoutEvent:
    values: dict[str, object] = {
        "event_id": f"payout-R-1:{PayoutEventKind.SUCCESS.value}:{uuid.uuid4().hex[:6]}",
        "kind": PayoutEventKind.SUCCESS,
        "payout_id": "payout-R-1",
        "receipt_id": "R-1",
        "telegram_id": 4242,
        "status": PayoutStatus.PAID,
        "amount_kopecks": 2500,
        "bill_id": "B-77",
        "occurred_at": datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return PayoutEvent.model_validate(values)


@pytest.fixture
async def channel(rabbit: RabbitSettings, broker: Broker) -> AsyncIterator[BonusEventsChannel]:
    events = BonusEventsChannel(rabbit, f"test.bonus.events.{uuid.uuid4().hex[:10]}")
    try:
        yield events
    finally:
        await events.aclose()
        await broker.delete([events.queue])


async def test_a_delivered_event_is_a_persistent_versioned_message_keyed_by_the_event_id(
    channel: BonusEventsChannel, broker: Broker
) -> None:
    as_protocol: EventChannel = channel  # the relay holds channels by the kernel's protocol
    event = paid_event()
    assert as_protocol.prepare([Outgoing(event)]) == set()  # it keeps no user message
    assert await as_protocol.deliver(Outgoing(event)) is None

    [got] = await broker.take_all(channel.queue, expected=1)
    assert got.message_id == event.event_id
    assert got.delivery_mode == 2  # persistent
    assert (got.content_type, got.type) == ("application/json", "payout_success")
    body = got.json()
    assert body["version"] == 1
    named = ("event_id", "kind", "payout_id", "receipt_id", "telegram_id", "status", "bill_id")
    assert {k: body[k] for k in named} == {
        "event_id": event.event_id, "kind": "payout_success", "payout_id": "payout-R-1", "receipt_id": "R-1",
        "telegram_id": 4242, "status": "PAID", "bill_id": "B-77",
    }
    assert body["amount_kopecks"] == 2500 and isinstance(body["amount_kopecks"], int)
    assert TEST_PHONE not in got.body.decode() and "msisdn" not in body


async def test_a_failed_payout_carries_its_error_and_a_repeat_keeps_its_message_id(
    channel: BonusEventsChannel, broker: Broker
) -> None:
    event = paid_event(
        kind=PayoutEventKind.FAILED, status=PayoutStatus.FAILED, error_code="30", error_description="declined",
        reason="permanent_error:30",
    )
    await channel.deliver(Outgoing(event))
    await channel.deliver(Outgoing(event))  # the relay tried again after a lost confirm

    got = await broker.take_all(channel.queue, expected=2)
    assert [g.message_id for g in got] == [event.event_id, event.event_id]  # the gateway dedupes on it
    body = json.loads(got[0].body)
    assert (body["kind"], body["status"], body["error_code"], body["error_description"]) == (
        "payout_failed", "FAILED", "30", "declined",
    )


async def test_broker_trouble_is_channel_unavailable_and_the_channel_recovers(
    rabbit: RabbitSettings, channel: BonusEventsChannel, broker: Broker
) -> None:
    nobody = rabbit.model_copy(update={"url": SecretStr(f"amqp://guest:guest@127.0.0.1:{free_port()}/")})
    down = BonusEventsChannel(nobody, channel.queue)
    with pytest.raises(ChannelUnavailable):
        await down.deliver(Outgoing(paid_event()))

    await channel.deliver(Outgoing(paid_event()))
    await broker.delete([channel.queue])  # the queue vanished under the open channel: no route
    with pytest.raises(ChannelUnavailable):
        await channel.deliver(Outgoing(paid_event()))
    await channel.deliver(Outgoing(paid_event()))  # a fresh connection declares the queue again
    assert len(await broker.take_all(channel.queue, expected=1)) == 1
