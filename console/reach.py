"""When a part of the stack does not answer, say which, at which address, and how to start it.

Every `payouts` command turns a connection failure into `Unreachable` (exit status 1, no traceback);
the transport's own words (gRPC, asyncpg, httpx) stay out of the message.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from runtime.settings import ConfigError, Settings

if TYPE_CHECKING:
    from temporalio.client import Client

    from ledger import Ledger

LOCAL_STACK = "`payouts dev` starts everything on this machine (docs/development.md)"


class Unreachable(Exception):
    """One or more parts of the stack did not answer; the message says what to do."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def temporal_problem(address: str, exc: BaseException) -> str:
    return (f"Temporal is not answering at {address} ({cause_of(exc)}). {LOCAL_STACK}; "
            "elsewhere start the Temporal service or set TEMPORAL_ADDRESS.")


def ledger_problem(url: str, cause: str) -> str:
    return (f"the ledger is not answering at {safe_url(url)} ({cause}). {LOCAL_STACK}; elsewhere start the "
            "database or set LEDGER_URL (docs/configuration.md), then `payouts migrate`.")


def webhook_problem(url: str, exc: BaseException) -> str:
    return (f"the webhook is not answering at {url} ({cause_of(exc)}). {LOCAL_STACK}; `payouts webhook` "
            "runs it alone; `--webhook-url` points elsewhere.")


def rabbit_problem(url: str, exc: BaseException) -> str:
    return (f"RabbitMQ is not answering at {url} ({cause_of(exc)}). Start it (`service rabbitmq-server start`, "
            "or `bash scripts/ensure-rabbitmq.sh`) or set RABBIT_URL (docs/configuration.md).")


async def temporal_client(settings: Settings) -> Client:
    """The client, or Unreachable naming the address."""
    from runtime.temporal_client import connect

    try:
        return await connect(settings)
    except ConfigError:
        raise
    except RuntimeError as exc:  # the SDK's bridge reports every connection failure as RuntimeError
        raise Unreachable([temporal_problem(settings.temporal.address, exc)]) from None


def missing_ledger_problem(url: str) -> str | None:
    """A SQLite ledger whose file is not there counts as down: opening it would create an empty ledger
    in the wrong place (a command run outside the directory `payouts dev` runs in)."""
    from ledger.engine import sqlite_file

    path = sqlite_file(url)
    return ledger_problem(url, f"no ledger file {path}") if path is not None and not path.exists() else None


async def ledger_problem_of(ledger: Ledger, url: str) -> str | None:
    """Why the ledger cannot serve a command, or None when it answers."""
    from ledger import LedgerUnavailable

    try:
        await ledger.ping()
    except LedgerUnavailable as exc:
        return ledger_problem(url, cause_of(exc))
    return None


def is_temporal_connect_failure(exc: BaseException) -> bool:
    """What `Client.connect` raises when the server does not answer (services connect at start)."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")


def is_database_down(exc: BaseException) -> bool:
    """A connection-level failure anywhere in the exception's chain (what `payouts migrate` meets)."""
    from sqlalchemy import exc as sa_exc

    return any(isinstance(e, OSError | sa_exc.OperationalError | sa_exc.InterfaceError) for e in _chain(exc))


def safe_url(url: str) -> str:
    """A database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        orig = getattr(current, "orig", None)  # a SQLAlchemy DBAPIError wraps the driver's exception
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return seen


def cause_of(exc: BaseException) -> str:
    """A few words for the failure, not the transport's text (which may be long, or carry a DSN)."""
    text = " ".join(str(e) for e in _chain(exc)).lower()
    kinds = [type(e) for e in _chain(exc)]
    if ConnectionRefusedError in kinds or "connection refused" in text or "connectionrefused" in text \
            or "connect call failed" in text:
        return "connection refused"
    if any(issubclass(k, socket.gaierror) for k in kinds) or "name or service not known" in text \
            or "dns error" in text or "failed to lookup" in text:
        return "unknown host"
    if any(issubclass(k, TimeoutError) for k in kinds) or "timed out" in text or "timeout" in text \
            or "deadline" in text:
        return "no answer in time"
    if "database" in text and "does not exist" in text:
        return "no such database"
    if "no such table" in text or "does not exist" in text:
        return "not migrated: run `payouts migrate`"
    if "database is locked" in text or "busy" in text:
        return "busy: another process holds the lock; try again"
    return "cannot connect"
