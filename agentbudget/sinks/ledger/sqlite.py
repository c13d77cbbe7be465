"""``SQLiteLedger``: every run and LLM call in a SQLite file, safe for several processes."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

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

__all__ = ["SQLiteLedger"]

_T = TypeVar("_T")

# Each step takes the schema from the previous version to the next (index = version - 1).
MIGRATIONS: tuple[str, ...] = (
    # 1: runs and calls
    """
    CREATE TABLE ab_runs (
        run_id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        user_id TEXT,
        team_id TEXT,
        agent TEXT NOT NULL,
        outcome TEXT NOT NULL,
        tripped_limit TEXT,
        error TEXT,
        llm_calls INTEGER NOT NULL,
        unpriced_calls INTEGER NOT NULL,
        tool_calls INTEGER NOT NULL,
        tool_names TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        cost_nanos INTEGER,
        duration_s REAL NOT NULL,
        cache_hit INTEGER NOT NULL,
        saved_nanos INTEGER NOT NULL,
        route_model TEXT,
        route_reason TEXT
    );
    CREATE INDEX ab_runs_started_at ON ab_runs (started_at);
    CREATE INDEX ab_runs_user ON ab_runs (user_id, started_at);
    CREATE INDEX ab_runs_team ON ab_runs (team_id, started_at);
    CREATE INDEX ab_runs_agent ON ab_runs (agent, started_at);
    CREATE TABLE ab_llm_calls (
        run_id TEXT NOT NULL REFERENCES ab_runs (run_id),
        seq INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        price_key TEXT,
        price_source TEXT,
        input_tokens INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_nanos INTEGER,
        estimated INTEGER NOT NULL,
        streamed INTEGER NOT NULL,
        degraded TEXT,
        is_local INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX ab_llm_calls_started_at ON ab_llm_calls (started_at);
    CREATE INDEX ab_llm_calls_model ON ab_llm_calls (model, started_at);
    """,
    # 2: service tier, standard-rate flag, the whole route as JSON
    """
    ALTER TABLE ab_llm_calls ADD COLUMN service_tier TEXT;
    ALTER TABLE ab_llm_calls ADD COLUMN priced_at_standard_rate INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE ab_runs ADD COLUMN route_json TEXT;
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION

_META = "CREATE TABLE IF NOT EXISTS ab_ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_MISCONFIGURED = (
    "file is not a database",
    "unable to open database file",
    "attempt to write a readonly database",
    "no such table",
    "no such column",
)


def _when(moment: datetime) -> str:
    """A UTC datetime as fixed-width ISO text, so text order is time order."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to version ``target`` inside the caller's write transaction.

    Returns:
        The version found before migrating (0 for an empty database).
    """
    conn.execute(_META)
    row = conn.execute("SELECT value FROM ab_ledger_meta WHERE key = 'schema_version'").fetchone()
    found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the ledger's schema version {found} is newer than this agentbudget's "
            f"({SCHEMA_VERSION}): upgrade agentbudget to write to it"
        )
    for version in range(found + 1, target + 1):
        for statement in MIGRATIONS[version - 1].split(";"):
            if statement.strip():
                conn.execute(statement)
    if target > found:
        conn.execute(
            "INSERT INTO ab_ledger_meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(target),),
        )
    return found


def _reports(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[RunReport]:
    """The runs ``sql`` selects, in its order, rebuilt with their calls."""
    runs = [dict(row) for row in conn.execute(sql, params)]
    calls: dict[str, list[dict[str, Any]]] = {run["run_id"]: [] for run in runs}
    ids = list(calls)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for row in conn.execute(
            f"SELECT * FROM ab_llm_calls WHERE run_id IN ({', '.join('?' * len(chunk))}) "
            "ORDER BY run_id, seq",
            chunk,
        ):
            calls[row["run_id"]].append(dict(row))
    return [rebuild(run, calls[run["run_id"]], _parse_when(run["started_at"])) for run in runs]


class SQLiteLedger:
    """An append-only ledger of runs and LLM calls in a SQLite file (a ``CostSink``).

    One row per run in ``ab_runs`` and one per LLM call in ``ab_llm_calls``, written in
    one ``BEGIN IMMEDIATE`` transaction per batch. The run id is the primary key: writing
    a report again (a retried batch) adds nothing. WAL mode and a busy timeout make it safe
    for several processes to write the same file; each thread gets its own connection.
    The schema is created, or migrated from an older version, on first use. No prompt or
    output text is stored: a ``RunReport`` holds none.

    Args:
        path: the database file (created when missing; its directory must exist), or a
            ``sqlite:///path.db`` URL.
        busy_timeout_s: how long a write waits for another process's lock before
            ``StoreUnavailable`` is raised.

    Raises:
        ConfigurationError: the path is a directory, its directory does not exist, it is
            ``:memory:`` (each thread would see its own empty database), or the timeout
            is not a positive number.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise ConfigurationError(f"path must be a file path or sqlite:/// URL, got {path!r}")
        if path.startswith("sqlite:///"):
            path = path[len("sqlite:///") :]
        elif "://" in path:
            raise ConfigurationError(
                f"a SQLite ledger takes a file path or 'sqlite:///path.db', got {path!r}; "
                "use PostgresLedger for postgresql:// URLs"
            )
        if path == ":memory:" or path.startswith("file:"):
            raise ConfigurationError(
                "a SQLite ledger needs a file (each thread opens its own connection, and an "
                "in-memory database is private to one); give a path, e.g. in a temp directory"
            )
        if os.path.isdir(path):
            raise ConfigurationError(f"the ledger path {path!r} is a directory; give a file path")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ConfigurationError(
                f"the directory of the ledger {path!r} does not exist: create {parent!r} first"
            )
        if (
            isinstance(busy_timeout_s, bool)
            or not isinstance(busy_timeout_s, (int, float))
            or not 0 < busy_timeout_s < 3600
        ):
            raise ConfigurationError(
                f"busy_timeout_s must be a number of seconds in (0, 3600), got {busy_timeout_s!r}"
            )
        self.path = path
        self.busy_timeout_s = float(busy_timeout_s)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._ready = False

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"

    # Writing.

    def record(self, report: RunReport) -> None:
        """Write one run and its calls (nothing when the run id is already there)."""
        self.record_batch((report,))

    def record_batch(self, reports: Sequence[RunReport]) -> None:
        """Write runs and their calls in one transaction; run ids already there are skipped.

        Raises:
            StoreUnavailable: the database stayed locked past ``busy_timeout_s`` or failed
                (the batch was not written; retrying it is safe).
        """
        for report in reports:
            if not isinstance(report, RunReport):
                raise TypeError(f"expected RunReport, got {type(report).__name__}")
        runs_sql = (
            f"INSERT INTO ab_runs ({', '.join(RUN_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(RUN_COLUMNS))}) ON CONFLICT (run_id) DO NOTHING"
        )
        calls_sql = (
            f"INSERT INTO ab_llm_calls ({', '.join(CALL_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(CALL_COLUMNS))}) ON CONFLICT (run_id, seq) DO NOTHING"
        )

        def write(conn: sqlite3.Connection) -> None:
            for report in reports:
                started_at = _when(report.started_at)
                if conn.execute(runs_sql, run_row(report, started_at)).rowcount:
                    conn.executemany(calls_sql, call_rows(report, started_at))

        self._write(write)

    def close(self) -> None:
        """Close every thread's connection (the ledger reopens them on next use)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for conn in connections:
            conn.close()

    # Reading.

    def summary(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        by: Group = "user",
    ) -> list[SpendRow]:
        """Spend per user, team, agent, model or UTC day, biggest first.

        Args:
            since: runs started at or after this moment (naive datetimes are UTC).
            until: runs started before this moment.
            by: ``"user"``, ``"team"``, ``"agent"``, ``"model"`` or ``"day"``.
        """
        group = check_group(by)
        start, end = check_filters(since, until)
        sql, params = summary_query(
            group,
            start,
            end,
            runs="ab_runs",
            calls="ab_llm_calls",
            day="substr(r.started_at, 1, 10)",
            mark="?",
            when=_when,
        )
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return sort_rows(spend_row(row) for row in rows)

    def runs(
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
        sql, params = runs_query(start, end, filters, limit, runs="ab_runs", mark="?", when=_when)
        return self._read(lambda conn: _reports(conn, sql, params))

    def top_runs(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        outcome: str | None = None,
        limit: int = 10,
    ) -> list[RunReport]:
        """The costliest runs, biggest first (unpriced ones last), with their calls.

        Args:
            since, until: the window, as in ``summary``.
            outcome: only runs with this outcome (``"tripped"``, ...); None for all.
            limit: how many runs at most.
        """
        start, end = check_filters(since, until, limit)
        sql, params = top_runs_query(
            start, end, check_outcome(outcome), limit, runs="ab_runs", mark="?", when=_when
        )
        return self._read(lambda conn: _reports(conn, sql, params))

    def schema_version(self) -> int:
        """The schema version of the database (0 before first use)."""

        def read(conn: sqlite3.Connection) -> int:
            conn.execute(_META)
            row = conn.execute(
                "SELECT value FROM ab_ledger_meta WHERE key = 'schema_version'"
            ).fetchone()
            return int(row[0]) if row else 0

        return self._guard(lambda: read(self._connection()))

    # Connections and transactions.

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL; SQLite answers "locked" at once (no busy handler) while another
        connection writes a file that is not in WAL mode yet, so retry until the timeout."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _transaction(self, conn: sqlite3.Connection, operation: Callable[[], _T]) -> _T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = operation()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if not self._ready:
            self._transaction(conn, lambda: migrate(conn))
            self._ready = True

    def _write(self, operation: Callable[[sqlite3.Connection], None]) -> None:
        def run() -> None:
            conn = self._connection()
            self._ensure_schema(conn)
            self._transaction(conn, lambda: operation(conn))

        self._guard(run)

    def _read(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        def run() -> _T:
            conn = self._connection()
            self._ensure_schema(conn)
            conn.execute("BEGIN")
            try:
                return operation(conn)
            finally:
                conn.execute("COMMIT")

        return self._guard(run)

    def _guard(self, operation: Callable[[], _T]) -> _T:
        try:
            return operation()
        except sqlite3.Error as exc:
            if any(reply in str(exc) for reply in _MISCONFIGURED):
                raise ConfigurationError(
                    f"the SQLite ledger {self.path!r} is unusable: {exc}"
                ) from exc
            raise StoreUnavailable(
                f"the SQLite ledger {self.path!r} failed: {exc}", url=f"sqlite:///{self.path}"
            ) from exc
