"""What the ledger's PostgreSQL did during a measured window, read from PostgreSQL itself.

Transactions and rows from `pg_stat_database` for the benchmark's own database; statements from
`pg_stat_statements` when the server preloads it (`shared_preload_libraries = 'pg_stat_statements'`;
without it the statement lines say so); CPU from `/proc` for every `postgres` process, with the
postmaster's reaped children, so backends that come and go are counted too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.harness import CLOCK_TICKS

# PostgreSQL flushes a backend's statistics when it goes idle, at most once a second.
_STATS_FLUSH_S = 1.5
_DB_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


def postgres_cpu_seconds() -> float:
    """User + system CPU of every live `postgres` process, plus what the postmaster's exited children used."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].partition(")")
        if name != "postgres":
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])
        if fields[1] == "1" or not _is_postgres(fields[1]):  # the postmaster: its reaped children too
            total += int(fields[13]) + int(fields[14])
    return total / CLOCK_TICKS


def _is_postgres(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().partition(" (")[2].startswith("postgres)")
    except OSError:
        return False


@dataclass
class PgMeter:
    """Counters of one database between `start()` and `stop()`."""

    url: str
    counters: dict[str, int] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)  # query text -> calls
    cpu: float = 0.0
    has_statements: bool = False

    def _engine(self) -> AsyncEngine:
        return create_async_engine(make_url(self.url), poolclass=NullPool, isolation_level="AUTOCOMMIT")

    async def _read(self) -> tuple[dict[str, int], dict[str, int]]:
        await asyncio.sleep(_STATS_FLUSH_S)
        engine = self._engine()
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(sa.text(
                    f"SELECT {', '.join(_DB_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"
                ))).one()  # fmt: skip
                counters = dict(zip(_DB_COUNTERS, map(int, row), strict=True))
                statements: dict[str, int] = {}
                if self.has_statements:
                    rows = await conn.execute(sa.text(
                        "SELECT query, sum(calls) FROM pg_stat_statements "
                        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) GROUP BY query"
                    ))  # fmt: skip
                    statements = {q: int(c) for q, c in rows}
                return counters, statements
        finally:
            await engine.dispose()

    async def start(self) -> None:
        engine = self._engine()
        try:
            async with engine.connect() as conn:
                try:
                    await conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                    await conn.execute(sa.text("SELECT 1 FROM pg_stat_statements LIMIT 1"))
                    self.has_statements = True
                except sa.exc.DBAPIError:
                    self.has_statements = False
        finally:
            await engine.dispose()
        self.counters, self.statements = await self._read()
        self.cpu = postgres_cpu_seconds()

    async def stop(self) -> None:
        cpu = postgres_cpu_seconds()
        counters, statements = await self._read()
        self.cpu = cpu - self.cpu
        self.counters = {k: v - self.counters.get(k, 0) for k, v in counters.items()}
        self.statements = {q: c - self.statements.get(q, 0) for q, c in statements.items()}
        self.statements = {q: c for q, c in self.statements.items() if c > 0 and "pg_stat" not in q}

    def lines(self, n: int, top: int = 12) -> str:
        c = self.counters
        out = [f"ledger (PostgreSQL, read from pg_stat_database) per payout: {c['xact_commit'] / n:.1f} transactions "
               f"committed ({c['xact_rollback'] / n:.1f} rolled back), {c['tup_inserted'] / n:.1f} rows inserted, "
               f"{c['tup_updated'] / n:.1f} updated, {c['tup_deleted'] / n:.1f} deleted; "
               f"PostgreSQL CPU {self.cpu / n * 1000:.0f} ms"]  # fmt: skip
        if not self.has_statements:
            out.append("statements: pg_stat_statements is not preloaded on this server (shared_preload_libraries)")
            return "\n".join(out)
        total = sum(self.statements.values())
        out.append(
            f"statements per payout (pg_stat_statements, BEGIN/COMMIT included): {total / n:.1f}; the most called:"
        )
        for query, calls in sorted(self.statements.items(), key=lambda kv: -kv[1])[:top]:
            out.append(f"  {calls / n:5.2f}  {' '.join(query.split())[:110]}")
        return "\n".join(out)
