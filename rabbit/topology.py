"""The consumer's queues, declared (idempotently) on every connection.

- the intake queue (`RABBIT_INTAKE_QUEUE`): durable, no arguments, so it matches a queue the bot's
  pipeline declared the same plain way;
- the dead-letter queue (`RABBIT_DEAD_LETTER_QUEUE`): durable; the consumer publishes what it cannot
  process there itself, with the reason in a header;
- the delay queue (`RABBIT_RETRY_QUEUE`): durable, nobody consumes it; a message waits there
  `RABBIT_RETRY_DELAY_SECONDS` (the queue's message TTL) and is then dead-lettered by the broker back
  to the intake queue through the default exchange.
"""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq.exceptions import ChannelPreconditionFailed
from pamqp.common import FieldTable

from runtime.settings import ConfigError, RabbitSettings


class TopologyMismatch(ConfigError):
    """A queue exists with other arguments than ours: no consumer can start until a person decides."""


def retry_queue_arguments(settings: RabbitSettings) -> FieldTable:
    return {
        "x-message-ttl": int(settings.retry_delay_seconds * 1000),
        "x-dead-letter-exchange": "",  # the default exchange: routes by queue name
        "x-dead-letter-routing-key": settings.intake_queue,
    }


async def declare_topology(channel: AbstractChannel, settings: RabbitSettings) -> AbstractQueue:
    """Declare the three queues; returns the intake queue. Raises TopologyMismatch."""
    name = settings.dead_letter_queue
    try:
        await channel.declare_queue(name, durable=True)
        name = settings.retry_queue
        await channel.declare_queue(name, durable=True, arguments=retry_queue_arguments(settings))
        name = settings.intake_queue
        return await channel.declare_queue(name, durable=True)
    except ChannelPreconditionFailed:
        raise TopologyMismatch(
            f"RabbitMQ queue {name!r} exists with other settings than this service declares (durable; "
            f"for the delay queue: TTL {settings.retry_delay_seconds:g} s, dead-lettered to "
            f"{settings.intake_queue!r}). Give it another name in the RABBIT_ settings, or delete it once empty."
        ) from None
