"""The one way every process connects to Temporal: same namespace, same data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from payouts.settings import TemporalSettings


def data_converter() -> DataConverter:
    """Pydantic payloads; the worker, the webhook, the CLI and replay tests all use this."""
    return pydantic_data_converter


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(settings.address, namespace=settings.namespace, data_converter=data_converter())
