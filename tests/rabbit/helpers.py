"""The real RabbitMQ at 127.0.0.1:5672 for tests: queues of their own (a random suffix per test, so
parallel runs never meet), reading what landed on a queue, and cutting one connection from the
broker's side (`rabbitmqctl close_connection`) without touching anybody else's."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelNotFoundEntity
from pydantic import SecretStr

from runtime.devdefaults import DEV_RABBIT_URL
from runtime.settings import RabbitSettings

RABBIT_URL = os.environ.get("PAYOUTS_TEST_RABBIT_URL", DEV_RABBIT_URL)


def isolated_rabbit_settings(**overrides: Any) -> RabbitSettings:
    """Settings naming queues no other test uses; a short delay and quick reconnects."""
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "url": SecretStr(RABBIT_URL),
        "intake_queue": f"test.receipt.accepted.{suffix}",
        "dead_letter_queue": f"test.receipt.accepted.dead.{suffix}",
        "retry_queue": f"test.receipt.accepted.retry.{suffix}",
        "retry_delay_seconds": 1.0,
        "prefetch": 4,
        "reconnect_min_seconds": 0.2,
        "reconnect_max_seconds": 1.0,
        "publish_timeout_seconds": 5.0,
        "metrics_port": 0,  # a `payouts consumer` of a test serves on a free port, never on another's
    }
    values.update(overrides)
    return RabbitSettings(**values)


def queues_of(settings: RabbitSettings) -> list[str]:
    return [settings.intake_queue, settings.dead_letter_queue, settings.retry_queue]


@dataclass
class Got:
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    delivery_mode: int | None
    content_type: str | None
    type: str | None

    def json(self) -> Any:
        return json.loads(self.body)


class Broker:
    """A test's own connection to the broker, for looking at queues."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection

    async def count(self, queue: str) -> int:
        """Ready messages on a queue (0 when it does not exist)."""
        channel = await self.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        except ChannelNotFoundEntity:
            return 0
        finally:
            if not channel.is_closed:
                await channel.close()

    async def take_all(self, queue: str, expected: int, timeout: float = 30) -> list[Got]:
        """Wait until `expected` messages are on the queue, take (and acknowledge) every one there."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.count(queue) < expected and loop.time() < deadline:
            await asyncio.sleep(0.1)
        channel = await self.connection.channel()
        out: list[Got] = []
        try:
            declared = await channel.declare_queue(queue, passive=True)
            while (message := await declared.get(fail=False)) is not None:
                await message.ack()
                out.append(Got(message.body, dict(message.headers or {}), message.message_id,
                               message.delivery_mode, message.content_type, message.type))
        finally:
            await channel.close()
        return out

    async def delete(self, queues: Iterable[str]) -> None:
        channel = await self.connection.channel()
        try:
            for queue in queues:
                await channel.queue_delete(queue)
        finally:
            await channel.close()


async def open_broker() -> Broker:
    return Broker(await aio_pika.connect(RABBIT_URL, client_properties={"connection_name": "receipt-payouts tests"}))


def close_connection_named(name: str, reason: str = "test: connection cut") -> int:
    """Close, from the broker's side, every connection whose client called itself `name`; returns how many."""
    rabbitmqctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    listed = subprocess.run(
        [rabbitmqctl, "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    closed = 0
    for line in listed.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if f'{{"connection_name","{name}"}}' in properties:
            subprocess.run([rabbitmqctl, "close_connection", pid, reason], capture_output=True, timeout=60, check=True)
            closed += 1
    return closed


def rabbit_env(settings: RabbitSettings) -> dict[str, str]:
    """The environment that gives a `payouts` process these RabbitMQ settings."""
    return {
        "RABBIT_URL": settings.url.get_secret_value(),
        "RABBIT_INTAKE_QUEUE": settings.intake_queue,
        "RABBIT_DEAD_LETTER_QUEUE": settings.dead_letter_queue,
        "RABBIT_RETRY_QUEUE": settings.retry_queue,
        "RABBIT_RETRY_DELAY_SECONDS": str(settings.retry_delay_seconds),
        "RABBIT_PREFETCH": str(settings.prefetch),
        "RABBIT_RECONNECT_MIN_SECONDS": str(settings.reconnect_min_seconds),
        "RABBIT_RECONNECT_MAX_SECONDS": str(settings.reconnect_max_seconds),
        "RABBIT_DELIVERY_LIMIT": str(settings.delivery_limit),
        "RABBIT_MAX_HANDLING_FAILURES": str(settings.max_handling_failures),
        "RABBIT_METRICS_PORT": str(settings.metrics_port),
    }
