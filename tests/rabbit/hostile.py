"""Messages the bot's broker accepts but a careless consumer chokes on, published raw.

pamqp refuses to encode some of them (a header name that is not UTF-8), and none of them decodes
on the way back in; RabbitMQ takes and delivers them all. So their content header is written here
byte by byte (`RawProperties`) and handed to aiormq's `basic_publish`, which sends whatever the
properties' `marshal` returns. Used by tests/rabbit/test_poison.py and bench/queue_soak.py.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence

import aio_pika
from pamqp import commands
from pamqp.header import ContentHeader

from rabbit.broker import connect, connection_name
from rabbit.topology import declare_topology
from runtime.settings import RabbitSettings

# Property flags (AMQP 0-9-1, basic class), in wire order.
CONTENT_TYPE, HEADERS, DELIVERY_MODE, MESSAGE_ID, TIMESTAMP = 0x8000, 0x2000, 0x1000, 0x0080, 0x0040


def shortstr(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


def table(items: bytes) -> bytes:
    return struct.pack(">I", len(items)) + items


def longstr_value(raw: bytes) -> bytes:
    return b"S" + struct.pack(">I", len(raw)) + raw


class RawProperties(commands.Basic.Properties):
    """Properties whose encoding we wrote ourselves: property flags, then the values."""

    def __init__(self, flags: int, values: bytes) -> None:
        super().__init__()
        self._wire = struct.pack(">H", flags) + values

    def marshal(self) -> bytes:
        return self._wire


def _with_id(flags: int, before_id: bytes, after_id: bytes, message_id: str) -> RawProperties:
    """content_type json, the given values, persistent, our message id (so a test can find it)."""
    return RawProperties(
        CONTENT_TYPE | flags | DELIVERY_MODE | MESSAGE_ID | (TIMESTAMP if after_id else 0),
        shortstr(b"application/json") + before_id + b"\x02" + shortstr(message_id.encode()) + after_id,
    )


def header_name_not_utf8(message_id: str) -> RawProperties:
    return _with_id(HEADERS, table(shortstr(b"x-\xff\xfe") + longstr_value(b"v")), b"", message_id)


def headers_nested(depth: int, message_id: str) -> RawProperties:
    nested = table(b"")
    for _ in range(depth):
        nested = table(shortstr(b"n") + b"F" + nested)
    return _with_id(HEADERS, nested, b"", message_id)


def timestamp_past_year_9999(message_id: str) -> RawProperties:
    return _with_id(0, b"", struct.pack(">Q", 2**63 - 1), message_id)


# What the consumer's detail header says of each (rabbit/frames.py).
UNDECODABLE: dict[str, tuple[object, str]] = {
    "header name not UTF-8": (header_name_not_utf8, "headers: text that is not UTF-8"),
    "headers nested 3,000 deep": (lambda mid: headers_nested(3000, mid), "headers: nested too deeply"),
    "timestamp 2^63-1": (timestamp_past_year_9999, "timestamp: a time out of range"),
}


def undecodable(kind: str, message_id: str | None = None) -> tuple[str, RawProperties]:
    """(message id, properties) of one undecodable kind."""
    build, _ = UNDECODABLE[kind]
    mid = message_id or f"poison-{uuid.uuid4().hex[:8]}"
    return mid, build(mid)  # type: ignore[operator]


def near_the_frame_limit(body: bytes, frame_max: int, message_id: str, spare: int = 40) -> aio_pika.Message:
    """A message whose content header is `spare` bytes under the frame limit: it fits as the bot
    sent it, and would not with a header or two more."""
    def message(pad: int) -> aio_pika.Message:
        return aio_pika.Message(body, headers={"x-padding": "p" * pad}, message_id=message_id,
                                content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)

    def frame_bytes(m: aio_pika.Message) -> int:
        return len(ContentHeader(body_size=len(body), properties=m.properties).marshal()) + 8

    base = frame_bytes(message(0))
    padded = message(frame_max - spare - base)
    assert frame_bytes(padded) == frame_max - spare
    return padded


async def publish_raw(settings: RabbitSettings, items: Sequence[tuple[bytes, commands.Basic.Properties]]) -> None:
    """Each (body, properties) on the intake queue, in order, each confirmed by the broker."""
    connection = await connect(settings, connection_name("hostile-publisher"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, settings)
        raw = await channel.get_underlay_channel()
        for body, properties in items:
            confirmation = await raw.basic_publish(body, routing_key=settings.intake_queue, properties=properties)
            assert isinstance(confirmation, commands.Basic.Ack), confirmation
