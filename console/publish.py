"""`payouts publish`: sample `receipt.accepted` messages on the queue, good ones and each kind of bad one.

A development tool: the phones are the demo's (operator code 00, nobody's number).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import aio_pika

from console.demo import sample_receipt
from rabbit.broker import connect, connection_name
from rabbit.contract import BODY_REASONS, DeadLetterReason
from rabbit.topology import declare_topology
from runtime.settings import RabbitSettings

# Every kind `--bad` can publish: each dead-letter reason a message's body can earn.
BAD_KINDS: tuple[str, ...] = tuple(reason.value for reason in BODY_REASONS)


def new_run() -> str:
    return datetime.now(UTC).strftime("%H%M%S") + "-" + uuid.uuid4().hex[:4]


def good_message(run: str, i: int, status: str = "accepted", **overrides: object) -> dict[str, object]:
    """A version-1 message: the intake body's fields plus `version` and `status`."""
    receipt = sample_receipt(run, i)
    receipt["receipt_id"] = f"queue-{run}-{i:03d}"
    return {"version": 1, "status": status, **receipt, **overrides}


def encode(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode()


def bad_messages(run: str, kinds: Iterable[str], max_bytes: int) -> list[tuple[str, bytes]]:
    """One message per kind (a conflicting duplicate is two: the original, then the one that differs)."""
    out: list[tuple[str, bytes]] = []
    for n, kind in enumerate(kinds, start=900):
        good = good_message(run, n)
        if kind == DeadLetterReason.TOO_LARGE:
            out.append((kind, encode({**good, "padding": "x" * max_bytes})))
        elif kind == DeadLetterReason.INVALID_JSON:
            out.append((kind, encode(good)[:-7]))
        elif kind == DeadLetterReason.SCHEMA_ERROR:
            out.append((kind, encode({k: v for k, v in good.items() if k != "amount_kopecks"})))
        elif kind == DeadLetterReason.UNKNOWN_VERSION:
            out.append((kind, encode({**good, "version": 99})))
        elif kind == DeadLetterReason.INVALID_PAYLOAD:
            out.append((kind, encode({**good, "amount_kopecks": 0})))
        elif kind == DeadLetterReason.CONFLICTING_DUPLICATE:
            out.append(("original", encode(good)))
            out.append((kind, encode({**good, "amount_kopecks": int(str(good["amount_kopecks"])) + 100})))
        else:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(BAD_KINDS)}")
    return out


async def publish(settings: RabbitSettings, queue: str, bodies: Sequence[bytes]) -> None:
    """Persistent messages on a durable `queue`, each confirmed by the broker before the next."""
    connection = await connect(settings, connection_name("publish"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        if queue == settings.intake_queue:
            # As the consumer declares it (a quorum queue with its arguments): what the bot's side
            # must declare too, if it declares anything (docs/queue.md, "Topology").
            await declare_topology(channel, settings)
        else:
            await channel.declare_queue(queue, durable=True)
        for body in bodies:
            message = aio_pika.Message(
                body,
                message_id=uuid.uuid4().hex,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await channel.default_exchange.publish(message, routing_key=queue, mandatory=True)


async def run_publish(settings: RabbitSettings, *, count: int, status: str, bad: Sequence[str]) -> list[str]:
    """Publish `count` good messages with `status`, then the `bad` kinds; returns a line per message."""
    run = new_run()
    kinds = BAD_KINDS if "all" in bad else tuple(bad)
    messages = [(f"good ({status})", encode(good_message(run, i, status))) for i in range(count)]
    messages += bad_messages(run, kinds, settings.max_message_bytes)
    await publish(settings, settings.intake_queue, [body for _, body in messages])
    return [f"{kind}: {len(body)} bytes" for kind, body in messages]
