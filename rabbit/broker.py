"""Talking to the broker: one way to connect, what counts as broker trouble, the reconnect back-off."""

from __future__ import annotations

import random
import uuid

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from yarl import URL

from runtime.settings import ConfigError, RabbitSettings

# What the broker going away (or refusing a call) looks like from aio-pika.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
    ChannelInvalidStateError,  # a call on a channel the broker already closed
)

_CONNECT_TIMEOUT_SECONDS = 10.0


def broker_url(settings: RabbitSettings) -> str:
    url = settings.url.get_secret_value()
    if not url:
        raise ConfigError("RABBIT_URL is not set (amqp://user:password@host:port/vhost of the bot's RabbitMQ)")
    return url


def display_url(settings: RabbitSettings) -> str:
    """The broker URL without its password, for banners and logs."""
    url = URL(settings.url.get_secret_value())
    return str(url.with_password("***") if url.password else url)


def connection_name(role: str) -> str:
    """A name the broker shows for the connection (`rabbitmqctl list_connections client_properties`)."""
    return f"receipt-payouts {role} {uuid.uuid4().hex[:8]}"


async def connect(settings: RabbitSettings, name: str) -> AbstractConnection:
    """A plain (not self-healing) connection: the caller owns reconnecting, so it knows when it happens."""
    return await aio_pika.connect(
        broker_url(settings),
        timeout=_CONNECT_TIMEOUT_SECONDS,
        client_properties={"connection_name": name},
    )


class Backoff:
    """Exponential back-off with jitter between `first` and `cap` seconds; `reset` after a success."""

    def __init__(self, first: float, cap: float) -> None:
        self._first, self._cap = first, cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not a secret
