"""``PostgresLedger``: every run and LLM call in PostgreSQL (psycopg 3, async)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ...errors import ConfigurationError, StoreUnavailable
from ...report import RunReport
from ._common import (
    CALL_COLUMNS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    Group,
    SpendRow,
    call_rows,
    check_filters,
    check_group,
    check_outcome,
    check_text,
    rebuild,
    run_row,
    runs_query,
    sort_rows,
    spend_row,
    summary_query,
    top_runs_query,
    utc,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresLedger"]

_T = TypeVar("_T")
APPLICATION_NAME = "agentbudget-ledger"
"""The ``application_name`` of the ledger's connections (see ``pg_stat_activity``)."""
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")

# Each step takes the schema from the previous version to the next (index = version - 1);
# ``{s}`` is the quoted schema name and a dot, or nothing.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs and calls
    (
        """CREATE TABLE {s}ab_runs (
            run_id TEXT PRIMARY KEY,
            started_at TIMESTAMPTZ NOT NULL,
            user_id TEXT,
            team_id TEXT,
            agent TEXT NOT NULL,
            outcome TEXT NOT NULL,
            tripped_limit TEXT,
            error TEXT,
            llm_calls INTEGER NOT NULL,
            unpriced_calls INTEGER NOT NULL,
            tool_calls INTEGER NOT NULL,
            tool_names JSONB NOT NULL,
            input_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            total_tokens BIGINT NOT NULL,
            cost_nanos BIGINT,
            duration_s DOUBLE PRECISION NOT NULL,
            cache_hit BOOLEAN NOT NULL,
            saved_nanos BIGINT NOT NULL,
            route_model TEXT,
            route_reason TEXT
        )""",
        "CREATE INDEX ab_runs_started_at ON {s}ab_runs (started_at)",
        "CREATE INDEX ab_runs_user ON {s}ab_runs (user_id, started_at)",
        "CREATE INDEX ab_runs_team ON {s}ab_runs (team_id, started_at)",
        "CREATE INDEX ab_runs_agent ON {s}ab_runs (agent, started_at)",
        """CREATE TABLE {s}ab_llm_calls (
            run_id TEXT NOT NULL REFERENCES {s}ab_runs (run_id),
            seq INTEGER NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            agent TEXT NOT NULL,
            model TEXT NOT NULL,
            price_key TEXT,
            price_source TEXT,
            input_tokens BIGINT NOT NULL,
            cached_input_tokens BIGINT NOT NULL,
            cache_write_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            reasoning_tokens BIGINT NOT NULL,
            cost_nanos BIGINT,
            estimated BOOLEAN NOT NULL,
            streamed BOOLEAN NOT NULL,
            degraded TEXT,
            is_local BOOLEAN NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        "CREATE INDEX ab_llm_calls_started_at ON {s}ab_llm_calls (started_at)",
        "CREATE INDEX ab_llm_calls_model ON {s}ab_llm_calls (model, started_at)",
    ),
    # 2: service tier, standard-rate flag, the whole route as JSON
    (
        "ALTER TABLE {s}ab_llm_calls ADD COLUMN service_tier TEXT",
        "ALTER TABLE {s}ab_llm_calls ADD COLUMN priced_at_standard_rate BOOLEAN NOT NULL "
        "DEFAULT false",
        "ALTER TABLE {s}ab_runs ADD COLUMN route_json JSONB",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigurationError(
            'PostgresLedger needs psycopg 3: pip install "agentbudget-sdk[postgres]"'
        ) from exc
    return psycopg


class PostgresLedger:
    """An append-only ledger of runs and LLM calls in PostgreSQL (a ``CostSink``).

    Same tables and guarantees as ``SQLiteLedger``, for many machines. Writes and reads
    are ``async`` (psycopg 3); each call opens its own connection and closes it (no
    connection outlives the event loop it was made on; put PgBouncer in front for very
    many writers). One transaction per batch, ``ON CONFLICT DO NOTHING`` on the run id.
    The schema is created or migrated on first use under a transaction-scoped advisory
    lock, so processes starting together migrate once.

    Sync callers (scripts, the CLI) use ``summary_sync``/``runs_sync``/``record_sync``,
    which run the coroutine on a private event loop in a helper thread.

    Args:
        url: ``postgresql://user:password@host:5432/dbname`` (``postgres://`` too).
        schema: the PostgreSQL schema holding the tables (created if missing); default
            the connection's ``search_path`` schema (usually ``public``).
        connect_timeout_s: seconds to wait for a connection.

    Raises:
        ConfigurationError: a URL that is not ``postgresql://``, an invalid schema name,
            or psycopg not installed (the message names the ``postgres`` extra).
    """

    def __init__(
        self, url: str, *, schema: str | None = None, connect_timeout_s: float = 5.0
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(
                f"a PostgreSQL ledger URL is 'postgresql://user@host:5432/dbname', got {url!r}"
            )
        if schema is not None and (not isinstance(schema, str) or not _SCHEMA_NAME.match(schema)):
            raise ConfigurationError(
                f"schema must be a PostgreSQL identifier (letters, digits, _; at most 63), "
                f"got {schema!r}"
            )
        if (
            isinstance(connect_timeout_s, bool)
            or not isinstance(connect_timeout_s, (int, float))
            or not 0 < connect_timeout_s <= 600
        ):
            raise ConfigurationError(
                f"connect_timeout_s must be a number of seconds in (0, 600], "
                f"got {connect_timeout_s!r}"
            )
        self._pg = _psycopg()
        self.url = url
        self.schema = schema
        self.connect_timeout_s = float(connect_timeout_s)
        self._ready = False

    def __repr__(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return f"PostgresLedger('{parts.scheme}://{host}{parts.path}', schema={self.schema!r})"

    # Writing.

    async def record(self, report: RunReport) -> None:
        """Write one run and its calls (nothing when the run id is already there)."""
        await self.record_batch((report,))

    async def record_batch(self, reports: Sequence[RunReport]) -> None:
        """Write runs and their calls in one transaction; run ids already there are skipped.

        Raises:
            StoreUnavailable: the server could not be reached or the connection broke
                (the batch was not written; retrying it is safe).
        """
        for report in reports:
            if not isinstance(report, RunReport):
                raise TypeError(f"expected RunReport, got {type(report).__name__}")
        runs_sql = (
            f"INSERT INTO {self._table('ab_runs')} ({', '.join(RUN_COLUMNS)}) VALUES "
            f"({', '.join(['%s'] * len(RUN_COLUMNS))}) ON CONFLICT (run_id) DO NOTHING"
        )
        calls_sql = (
            f"INSERT INTO {self._table('ab_llm_calls')} ({', '.join(CALL_COLUMNS)}) VALUES "
            f"({', '.join(['%s'] * len(CALL_COLUMNS))}) ON CONFLICT (run_id, seq) DO NOTHING"
        )

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.cursor() as cur:
                for report in reports:
                    started_at = utc(report.started_at)
                    await cur.execute(runs_sql, run_row(report, started_at))
                    if cur.rowcount and report.calls:
                        await cur.executemany(calls_sql, call_rows(report, started_at))

        await self._run(write)

    def record_sync(self, report: RunReport) -> None:
        """``record`` for sync code (runs on a private event loop in a helper thread)."""
        _run_sync(lambda: self.record(report))

    # Reading.

    async def summary(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        by: Group = "user",
    ) -> list[SpendRow]:
        """Spend per user, team, agent, model or UTC day, biggest first (as ``SQLiteLedger``)."""
        group = check_group(by)
        start, end = check_filters(since, until)
        sql, params = summary_query(
            group,
            start,
            end,
            runs=self._table("ab_runs"),
            calls=self._table("ab_llm_calls"),
            day="to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            mark="%s",
        )

        async def read(conn: psycopg.AsyncConnection[Any]) -> list[SpendRow]:
            async with conn.cursor() as cur:
                await cur.execute(sql, params)
                return sort_rows(spend_row(row) for row in await cur.fetchall())

        return await self._run(read)

    def summary_sync(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        by: Group = "user",
    ) -> list[SpendRow]:
        """``summary`` for sync code."""
        return _run_sync(lambda: self.summary(since, until, by))

    async def runs(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        user: str | None = None,
        team: str | None = None,
        agent: str | None = None,
        limit: int | None = 100,
    ) -> list[RunReport]:
        """The recorded runs, newest first, rebuilt as ``RunReport`` objects with their calls."""
        start, end = check_filters(since, until, limit)
        filters = {
            "user_id": check_text("user", user),
            "team_id": check_text("team", team),
            "agent": check_text("agent", agent),
        }
        sql, params = runs_query(start, end, filters, limit, runs=self._table("ab_runs"), mark="%s")
        return await self._run(lambda conn: self._reports(conn, sql, params))

    def runs_sync(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        user: str | None = None,
        team: str | None = None,
        agent: str | None = None,
        limit: int | None = 100,
    ) -> list[RunReport]:
        """``runs`` for sync code."""
        return _run_sync(
            lambda: self.runs(since, until, user=user, team=team, agent=agent, limit=limit)
        )

    async def top_runs(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        outcome: str | None = None,
        limit: int = 10,
    ) -> list[RunReport]:
        """The costliest runs, biggest first, with their calls (as ``SQLiteLedger``)."""
        start, end = check_filters(since, until, limit)
        sql, params = top_runs_query(
            start, end, check_outcome(outcome), limit, runs=self._table("ab_runs"), mark="%s"
        )
        return await self._run(lambda conn: self._reports(conn, sql, params))

    def top_runs_sync(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        outcome: str | None = None,
        limit: int = 10,
    ) -> list[RunReport]:
        """``top_runs`` for sync code."""
        return _run_sync(lambda: self.top_runs(since, until, outcome=outcome, limit=limit))

    async def _reports(
        self, conn: psycopg.AsyncConnection[Any], sql: str, params: Sequence[Any]
    ) -> list[RunReport]:
        """The runs ``sql`` selects, in its order, rebuilt with their calls."""
        from psycopg.rows import dict_row

        calls_sql = (
            f"SELECT * FROM {self._table('ab_llm_calls')} WHERE run_id = ANY(%s) "
            "ORDER BY run_id, seq"
        )
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            runs = await cur.fetchall()
            calls: dict[str, list[dict[str, Any]]] = {run["run_id"]: [] for run in runs}
            if calls:
                await cur.execute(calls_sql, (list(calls),))
                for row in await cur.fetchall():
                    calls[row["run_id"]].append(row)
        return [rebuild(run, calls[run["run_id"]], run["started_at"]) for run in runs]

    async def schema_version(self) -> int:
        """The schema version in the database (0 before first use)."""

        async def read(conn: psycopg.AsyncConnection[Any]) -> int:
            return await self._version(conn)

        return await self._run(read, migrate=False)

    async def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Create or migrate the schema to ``target`` now (writes and reads do it on first
        use). Returns the version found before."""
        if not 0 < target <= SCHEMA_VERSION:
            raise ConfigurationError(f"target must be in 1..{SCHEMA_VERSION}, got {target!r}")

        async def step(conn: psycopg.AsyncConnection[Any]) -> int:
            return await self._migrate(conn, target)

        return await self._run(step, migrate=False)

    # Connections, schema, errors.

    def _table(self, name: str) -> str:
        return f'"{self.schema}".{name}' if self.schema else name

    async def _version(self, conn: psycopg.AsyncConnection[Any]) -> int:
        async with conn.cursor() as cur:
            await cur.execute("SELECT to_regclass(%s)", (self._table("ab_ledger_meta"),))
            exists = await cur.fetchone()
            if exists is None or exists[0] is None:
                return 0
            await cur.execute(
                f"SELECT value FROM {self._table('ab_ledger_meta')} WHERE key = 'schema_version'"
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self, conn: psycopg.AsyncConnection[Any], target: int) -> int:
        """Create or migrate the schema under an advisory lock, in one transaction."""
        async with conn.transaction(), conn.cursor() as cur:
            # Held until the transaction ends: a second process waits, then finds the
            # schema current. The key is per schema name.
            await cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"agentbudget.ledger:{self.schema or ''}",),
            )
            if self.schema:
                await cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table('ab_ledger_meta')} "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            found = await self._version(conn)
            if found > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"the ledger's schema version {found} is newer than this agentbudget's "
                    f"({SCHEMA_VERSION}): upgrade agentbudget to write to it"
                )
            prefix = f'"{self.schema}".' if self.schema else ""
            for version in range(found + 1, target + 1):
                for statement in MIGRATIONS[version - 1]:
                    await cur.execute(statement.format(s=prefix))
            if target > found:
                await cur.execute(
                    f"INSERT INTO {self._table('ab_ledger_meta')} (key, value) "
                    "VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(target),),
                )
        return found

    async def _run(
        self,
        operation: Callable[[psycopg.AsyncConnection[Any]], Awaitable[_T]],
        *,
        migrate: bool = True,
    ) -> _T:
        pg = self._pg
        try:
            conn = await pg.AsyncConnection.connect(
                self.url,
                connect_timeout=max(1, round(self.connect_timeout_s)),
                application_name=APPLICATION_NAME,
            )
        except pg.Error as exc:
            raise self._translate(exc) from exc
        try:
            async with conn:
                if migrate and not self._ready:
                    await self._migrate(conn, SCHEMA_VERSION)
                    self._ready = True
                async with conn.transaction():
                    return await operation(conn)
        except pg.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        pg = self._pg
        where = repr(self)
        if isinstance(exc, pg.errors.InsufficientPrivilege):
            return ConfigurationError(f"{where}: the database user lacks a privilege: {exc}")
        if isinstance(exc, (pg.errors.UndefinedTable, pg.errors.UndefinedColumn)):
            return ConfigurationError(
                f"{where}: the ledger's tables do not match its schema version: {exc}"
            )
        return StoreUnavailable(f"{where} failed: {exc}", url=self._safe_url())

    def _safe_url(self) -> str:
        """The URL without its password."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


def _run_sync(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion on a private event loop in a helper thread (works
    whether or not the calling thread runs an event loop)."""
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="agentbudget-ledger-sync")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
