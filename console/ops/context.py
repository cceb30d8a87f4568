"""What every `payouts ops` command needs: settings, the Temporal client (same data converter as the
workers, so payloads decode) and the ledger; closed again on the way out. Both are reached before the
command runs: when one does not answer, the operator reads which, where, and how to start it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from console.devstate import use_dev_stack
from console.reach import Unreachable, ledger_problem_of, missing_ledger_problem, temporal_client
from ledger import Ledger
from runtime.settings import Settings, load_settings


class OpsError(RuntimeError):
    """A failure the operator should read on stderr (exit status 1)."""


def settings_for(dev: bool, data_dir: Path | None = None) -> Settings:
    """`--dev`: the local `payouts dev` stack's addresses and dev settings where the environment is silent."""
    if dev:
        use_dev_stack(data_dir)
    return load_settings()


@dataclass
class Ops:
    settings: Settings
    client: Client
    ledger: Ledger


@asynccontextmanager
async def ops_context(settings: Settings) -> AsyncIterator[Ops]:
    url = settings.ledger.url
    missing = missing_ledger_problem(url)
    ledger = None if missing else Ledger.from_url(url)
    try:
        client, ledger_down = await asyncio.gather(
            _temporal_or_problem(settings), ledger_problem_of(ledger, url) if ledger else _just(missing)
        )
        problems = [p for p in (client, ledger_down) if isinstance(p, str)]
        if problems:
            raise Unreachable(problems)
        assert isinstance(client, Client) and ledger is not None
        yield Ops(settings=settings, client=client, ledger=ledger)
    finally:
        if ledger is not None:
            await ledger.aclose()


async def _temporal_or_problem(settings: Settings) -> Client | str:
    try:
        return await temporal_client(settings)
    except Unreachable as exc:
        return str(exc)


async def _just(problem: str | None) -> str | None:
    return problem
