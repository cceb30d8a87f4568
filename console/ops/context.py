"""What every `payouts ops` command needs: settings, the Temporal client (same data converter as the
workers, so payloads decode) and the ledger; closed again on the way out."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from ledger import Ledger
from payouts.settings import ConfigError, Settings, load_settings


class OpsError(RuntimeError):
    """A failure the operator should read on stderr (exit status 1)."""


def use_dev_defaults(data_dir: Path = Path(".data")) -> None:
    """`--dev`: fill in what `payouts dev` uses (ledger under ./.data, dev keys) where the environment
    is silent, so a second terminal can talk to a local `payouts dev` stack."""
    from payouts.devdefaults import dev_environment

    environment = dev_environment(
        sandbox_url="http://127.0.0.1:8099", webhook_url="http://127.0.0.1:8080", data_dir=str(data_dir.resolve())
    )
    for key, value in environment.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("TEMPORAL_ADDRESS", "127.0.0.1:7233")


def settings_for(dev: bool) -> Settings:
    if dev:
        use_dev_defaults()
    return load_settings()


@dataclass
class Ops:
    settings: Settings
    client: Client
    ledger: Ledger


@asynccontextmanager
async def ops_context(settings: Settings) -> AsyncIterator[Ops]:
    from payouts.temporal_client import connect

    try:
        client = await connect(settings)
    except ConfigError:
        raise
    except RuntimeError as exc:
        raise OpsError(f"cannot connect to Temporal at {settings.temporal.address}: {exc}") from None
    ledger = Ledger.from_url(settings.ledger.url)
    try:
        yield Ops(settings=settings, client=client, ledger=ledger)
    finally:
        await ledger.aclose()
