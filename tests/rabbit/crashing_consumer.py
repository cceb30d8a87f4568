"""`python -m tests.rabbit.crashing_consumer`: the consumer as its own process, on settings from the
environment, killed with SIGKILL right after its first payout start is confirmed, before its ack."""

from __future__ import annotations

import asyncio
from typing import cast

from temporalio.client import Client

from rabbit.main import build_consumer
from runtime.settings import load_settings
from runtime.temporal_client import connect
from tests.rabbit.clients import DiesAfterStart


async def main() -> None:
    settings = load_settings()
    client = cast(Client, DiesAfterStart(await connect(settings)))
    await build_consumer(settings, client).run()


if __name__ == "__main__":
    asyncio.run(main())
