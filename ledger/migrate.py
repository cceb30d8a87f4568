"""Run the ledger's Alembic migrations without an alembic.ini (used by `payouts migrate` and tests)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from ledger.engine import ensure_sqlite_parent

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic Config pointing at the packaged migrations; the URL travels in `attributes`
    (not the ini options) so a password with `%` in it needs no escaping."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("the ledger has no migrations")
    return head


def _upgrade(url: str) -> None:
    ensure_sqlite_parent(url)
    command.upgrade(alembic_config(url), "head")


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest revision (a no-op when it is there already).

    Blocking. The migration environment runs its own event loop, so when called from a thread that
    already runs one (prefer `await asyncio.to_thread(upgrade, url)` there) it works in a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _upgrade(url)
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _upgrade(url)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="ledger-migrate")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
