"""The operator's console against a real stack: the Temporal dev server WITH its Web UI (started the
way `payouts dev` starts it, codec endpoint included), the sandbox, the webhook and the workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr
from temporalio.client import Client

from console.dev import start_temporal_dev_server, stop_process, wait_for_port
from runtime.settings import PayoutSettings, Settings, WebhookSettings
from runtime.temporal_client import data_converter
from tests.stack import Stack, free_port, running_stack, stack_crypto
from webhook.codec_server import setup_codec_server

CALLBACK_TIMEOUT = 3  # seconds: a dropped callback escalates quickly on the real server


@dataclass
class TemporalUi:
    client: Client
    address: str
    ui_url: str


async def _codec_server(port: int, ui_port: int) -> web.AppRunner:
    """The remote codec the Web UI decodes payloads with (what the webhook serves at /codec)."""
    origins = f"http://127.0.0.1:{ui_port},http://localhost:{ui_port}"
    settings = Settings(env="dev", crypto=stack_crypto(),
                        webhook=WebhookSettings(codec_cors_origins=origins, codec_token=SecretStr("")))
    app = web.Application()
    setup_codec_server(app, settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _connect(address: str) -> Client:
    last: Exception | None = None
    for _ in range(100):
        try:
            return await Client.connect(address, data_converter=data_converter(stack_crypto()))
        except RuntimeError as exc:
            last = exc
            await asyncio.sleep(0.2)
    raise RuntimeError(f"Temporal dev server at {address} did not answer: {last}")


@pytest.fixture(scope="session")
async def temporal_ui(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TemporalUi]:
    data_dir = tmp_path_factory.mktemp("temporal-ui")
    port, ui_port, codec_port = free_port(), free_port(), free_port()
    codec = await _codec_server(codec_port, ui_port)
    server = start_temporal_dev_server(
        data_dir, port=port, ui_port=ui_port, codec_endpoint=f"http://127.0.0.1:{codec_port}/codec"
    )
    try:
        await wait_for_port("127.0.0.1", port, 60, server)
        await wait_for_port("127.0.0.1", ui_port, 60, server)
        address = f"127.0.0.1:{port}"
        yield TemporalUi(client=await _connect(address), address=address, ui_url=f"http://127.0.0.1:{ui_port}")
    finally:
        stop_process(server)
        await codec.cleanup()


def ops_policy() -> PayoutSettings:
    return PayoutSettings(
        callback_timeout_seconds=CALLBACK_TIMEOUT,
        retry_backoff_seconds=1,
        max_bill_rounds=2,
        manual_reminder_seconds=3600,
        # Above the stack's Portmone budget (connect 2 + write 2 + read 2) plus the 10 s ledger margin.
        bill_attempt_timeout_seconds=20,
    )


@pytest.fixture
async def stack(temporal_ui: TemporalUi, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(temporal_ui.client, tmp_path, read_timeout=2.0, telecom=True, payout=ops_policy()) as s:
        yield s
