"""Delivered messages whose AMQP properties the client cannot decode: delivered anyway, marked.

RabbitMQ passes a message's properties (its content header) through as the publisher wrote them.
The AMQP client (pamqp, under aio-pika) fails on some that the broker accepted: a header name that
is not UTF-8, a header table nested deeper than Python's recursion limit, a timestamp past the
year 9999. The failure is raised while the connection reads its frames, so without this module the
connection drops before our handler ever sees the message, the broker puts the message back at
the head of the queue, and the consumer meets it again on the next connection: intake stalls.

`install()` wraps `pamqp.header.ContentHeader.unmarshal` (once per process; idempotent): when the
whole header cannot be decoded, each property is decoded on its own, the ones that fail are left
out (their encoded length is known from the wire format, so the rest still decodes), and the
header `UNDECODABLE_HEADER` names them. The consumer dead-letters such a message with the reason
`undecodable_properties` (docs/queue.md). The body is untouched: it travels in its own frames.

It is process-wide, because the client reads frames below any API aio-pika offers. A message whose
properties decode is not affected; nothing is ever decoded differently, only what would have
closed the connection is delivered instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pamqp import commands, decode
from pamqp.header import ContentHeader

UNDECODABLE_HEADER = "x-payouts-undecodable"

_Unmarshal = Callable[[ContentHeader, bytes], None]
_original: _Unmarshal | None = None


def install() -> None:
    """Make content headers that cannot be decoded arrive marked instead of closing the connection."""
    global _original
    if _original is not None:
        return
    _original = ContentHeader.unmarshal

    def unmarshal(self: ContentHeader, data: bytes) -> None:
        assert _original is not None
        try:
            _original(self, data)
        except Exception as exc:  # ValueError, RecursionError, OverflowError, OSError: whatever decoding raised
            _salvage(self, data, exc)

    ContentHeader.unmarshal = unmarshal  # type: ignore[method-assign]


def undecodable(headers: dict[str, Any] | None) -> str | None:
    """What could not be decoded (`headers: text that is not UTF-8`), or None for a sound message."""
    value = (headers or {}).get(UNDECODABLE_HEADER)
    return value if isinstance(value, str) and value else None


def _salvage(header: ContentHeader, data: bytes, exc: Exception) -> None:
    """Decode what can be decoded; raise `exc` again when not even the frame's layout can be read."""
    try:
        header.class_id, header.weight, header.body_size = struct.unpack(">HHQ", data[0:12])
        offset, flags = header._get_flags(data[12:])
    except (struct.error, ValueError):
        raise exc from None
    properties = commands.Basic.Properties()
    rest = data[12 + offset:]
    broken: list[str] = []
    for name in properties.__slots__:
        if not flags & properties.flags[name]:
            continue
        data_type = getattr(commands.Basic.Properties, "_" + name)
        try:
            consumed, value = decode.by_type(rest, data_type)
        except Exception as failure:
            why = "a time out of range" if data_type == "timestamp" else _why(failure)
            broken.append(f"{_AMQP_NAMES.get(name, name)}: {why}")
            length = _encoded_length(rest, data_type)
            if length is None:  # not even its length can be read: what follows is lost too
                break
            consumed = length
        else:
            setattr(properties, name, value)
        rest = rest[consumed:]
    headers = dict(properties.headers or {})
    headers[UNDECODABLE_HEADER] = "; ".join(broken) or f"content header: {_why(exc)}"
    properties.headers = headers
    header.properties = properties


# The AMQP names of the properties pamqp spells differently.
_AMQP_NAMES = {"message_type": "type"}


def _encoded_length(data: bytes, data_type: str) -> int | None:
    """How many bytes a property of `data_type` takes on the wire, without decoding it."""
    try:
        if data_type == "shortstr":
            return 1 + data[0]
        if data_type in ("longstr", "table"):
            return 4 + int(struct.unpack(">I", data[0:4])[0])
    except (IndexError, struct.error):
        return None
    return {"octet": 1, "timestamp": 8}.get(data_type)


def _why(failure: BaseException) -> str:
    """What kind of value broke decoding, in our words (never the value)."""
    cause: BaseException | None = failure
    while cause is not None:  # pamqp may wrap the first error in a ValueError of its own
        if isinstance(cause, UnicodeDecodeError):
            return "text that is not UTF-8"
        if isinstance(cause, RecursionError):
            return "nested too deeply"
        if isinstance(cause, (OverflowError, OSError)):
            return "a value out of range"
        cause = cause.__cause__ or cause.__context__
    return f"cannot be decoded ({type(failure).__name__})"
