"""The consumer's queues, declared (idempotently) on every connection (docs/queue.md, "Topology").

- the dead-letter queue (`RABBIT_DEAD_LETTER_QUEUE`): durable; the consumer publishes what it
  cannot process there itself, with the reason in a header, and the broker dead-letters there what
  the consumer never settles (below);
- the intake queue (`RABBIT_INTAKE_QUEUE`): a durable **quorum** queue with a delivery limit
  (`RABBIT_DELIVERY_LIMIT`) and the dead-letter queue as its dead-letter target, at least once. A
  message the consumer dies on, whatever the cause (it cannot decode it, the process crashes on it),
  comes back only that many times: then the broker moves it to the dead-letter queue itself, with
  `x-first-death-reason: delivery_limit`, and intake goes on. A policy cannot make a queue a quorum
  queue, so the arguments are declared; the bot's side declares the same ones, or none;
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


def intake_queue_arguments(settings: RabbitSettings) -> FieldTable:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.delivery_limit,
        "x-dead-letter-exchange": "",  # the default exchange: routes by queue name
        "x-dead-letter-routing-key": settings.dead_letter_queue,
        # At least once: the broker keeps the message until the dead-letter queue has confirmed it
        # (needs reject-publish, which only matters if someone also sets a length limit).
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


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
        return await channel.declare_queue(name, durable=True, arguments=intake_queue_arguments(settings))
    except ChannelPreconditionFailed:
        raise TopologyMismatch(
            f"RabbitMQ queue {name!r} exists with other settings than this service declares (durable; the intake "
            f"queue a quorum queue with x-delivery-limit {settings.delivery_limit}, dead-lettered to "
            f"{settings.dead_letter_queue!r} at least once; the delay queue: TTL {settings.retry_delay_seconds:g} s, "
            f"dead-lettered to {settings.intake_queue!r}). Give it another name in the RABBIT_ settings, or move its "
            "messages and delete it (docs/queue.md, \"Topology\")."
        ) from None
