"""``sqlite:///path.db``: counters in a SQLite file, shared by the processes of one machine."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConfigurationError, StoreUnavailable
from .base import (
    DEFAULT_GRACE_S,
    DEFAULT_RETENTION_S,
    BaseStore,
    Charge,
    CounterState,
    LeaseRenewer,
    ReserveResult,
    SpendRecorder,
    StoreConfigurationError,
    check_seconds,
    settle_error,
)

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")
_PURGE_EVERY_S = 60.0
# SQLite errors that no retry fixes: the path or the file is wrong.
_MISCONFIGURED = (
    "file is not a database",
    "unable to open database file",
    "attempt to write a readonly database",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ab_counters (
    key TEXT PRIMARY KEY,
    spent INTEGER NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS ab_counters_expiry ON ab_counters (expires_at);
CREATE TABLE IF NOT EXISTS ab_holds (
    key TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    amount INTEGER NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY (key, reservation_id)
);
CREATE INDEX IF NOT EXISTS ab_holds_lease ON ab_holds (key, lease_until);
CREATE INDEX IF NOT EXISTS ab_holds_purge ON ab_holds (lease_until);
CREATE TABLE IF NOT EXISTS ab_reservations (
    reservation_id TEXT PRIMARY KEY,
    charges TEXT NOT NULL,
    settled INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ab_reservations_expiry ON ab_reservations (expires_at);
"""

# A reservation record: [[counter key, counter expiry or None], ...] in charge order.
_Charges = list[tuple[str, float | None]]


class SQLiteStore(BaseStore, SpendRecorder, LeaseRenewer):
    """Budget counters in a SQLite database, safe across processes on one machine.

    Every operation is one ``BEGIN IMMEDIATE`` transaction (WAL mode, ``busy_timeout``)
    run in a worker thread with ``asyncio.to_thread``; one connection per store,
    guarded by a lock. ``sqlite:///spend.db`` is relative to the working directory,
    ``sqlite:////var/lib/spend.db`` absolute, ``sqlite:///:memory:`` private to the store.

    Args:
        url: ``sqlite:///path.db``.
        clock: returns the time in seconds; inject a fake one in tests.
        grace_s: seconds a counter outlives its window.
        retention_s: seconds a reservation record outlives its lease or its settle.
        busy_timeout_s: how long to wait for another process's write lock.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        grace_s: float = DEFAULT_GRACE_S,
        retention_s: float = DEFAULT_RETENTION_S,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ConfigurationError(
                f"a SQLite store URL is 'sqlite:///relative.db', 'sqlite:////absolute.db' or "
                f"'sqlite:///:memory:', got {url!r}"
            )
        super().__init__(url)
        self.grace_s = check_seconds("grace_s", grace_s, allow_zero=True)
        self.retention_s = check_seconds("retention_s", retention_s)
        self.path = url[len("sqlite:///") :]
        self.busy_timeout_s = check_seconds("busy_timeout_s", busy_timeout_s, allow_zero=True)
        if self.path != ":memory:":
            if os.path.isdir(self.path):
                raise ConfigurationError(
                    f"the SQLite store {self.path!r} is a directory; give a file path"
                )
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise ConfigurationError(
                    f"the directory of the SQLite store {self.path!r} does not exist: create "
                    f"{parent!r} first"
                )
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._next_purge = float("-inf")

    async def _do_reserve(
        self, charges: tuple[Charge, ...], reservation_id: str, lease_s: float
    ) -> ReserveResult:
        def reserve(conn: sqlite3.Connection, now: float) -> ReserveResult:
            if self._record(conn, reservation_id, now) is not None:
                raise ConfigurationError(
                    f"reservation id {reservation_id!r} was already used; use a fresh id"
                )
            self._purge(conn, now)
            for index, charge in enumerate(charges):
                used = self._spent(conn, charge.key, now)
                if used is None:
                    used = 0
                else:
                    conn.execute(
                        "DELETE FROM ab_holds WHERE key = ? AND lease_until <= ?",
                        (charge.key, now),
                    )
                    (reserved,) = conn.execute(
                        "SELECT COALESCE(SUM(amount), 0) FROM ab_holds WHERE key = ?",
                        (charge.key,),
                    ).fetchone()
                    used += reserved
                if used + charge.amount > charge.limit:
                    return ReserveResult(False, reservation_id, index, charge.limit - used)
            lease_until = now + lease_s
            record: _Charges = []
            for charge in charges:
                expires_at = None if charge.ttl_s is None else now + charge.ttl_s + self.grace_s
                conn.execute(
                    "INSERT INTO ab_counters (key, spent, expires_at) VALUES (?, 0, ?) "
                    "ON CONFLICT (key) DO UPDATE SET "
                    "expires_at = COALESCE(excluded.expires_at, expires_at)",
                    (charge.key, expires_at),
                )
                conn.execute(
                    "INSERT OR REPLACE INTO ab_holds VALUES (?, ?, ?, ?)",
                    (charge.key, reservation_id, charge.amount, lease_until),
                )
                record.append((charge.key, expires_at))
            conn.execute(
                "INSERT OR REPLACE INTO ab_reservations VALUES (?, ?, 0, ?)",
                (reservation_id, json.dumps(record), lease_until + self.retention_s),
            )
            return ReserveResult(True, reservation_id)

        return await self._run(reserve)

    async def _do_settle(self, reservation_id: str, actual: tuple[int, ...] | None) -> None:
        def settle(conn: sqlite3.Connection, now: float) -> None:
            found = self._record(conn, reservation_id, now)
            if found is None:
                if actual is None or not any(actual):
                    return
                raise settle_error(reservation_id, None, len(actual))
            charges, settled = found
            if settled:
                return
            amounts = actual if actual is not None else (0,) * len(charges)
            if len(amounts) != len(charges):
                raise settle_error(reservation_id, len(charges), len(amounts))
            self._apply(conn, reservation_id, charges, amounts, now)

        await self._run(settle)

    async def _do_record(
        self, reservation_id: str, charges: tuple[Charge, ...], actual: tuple[int, ...]
    ) -> bool:
        def record(conn: sqlite3.Connection, now: float) -> bool:
            found = self._record(conn, reservation_id, now)
            if found is None:
                held: _Charges = [
                    (c.key, None if c.ttl_s is None else now + c.ttl_s + self.grace_s)
                    for c in charges
                ]
            else:
                held, settled = found
                if settled:
                    return False
                if len(held) != len(actual):
                    raise settle_error(reservation_id, len(held), len(actual))
            self._apply(conn, reservation_id, held, actual, now)
            return True

        return await self._run(record)

    async def _do_renew(self, reservation_id: str, lease_s: float) -> bool:
        def renew(conn: sqlite3.Connection, now: float) -> bool:
            found = self._record(conn, reservation_id, now)
            if found is None or found[1]:
                return False
            lease_until = now + lease_s
            renewed = 0
            for key, _ in found[0]:
                renewed += conn.execute(
                    "UPDATE ab_holds SET lease_until = ? "
                    "WHERE key = ? AND reservation_id = ? AND lease_until > ?",
                    (lease_until, key, reservation_id, now),
                ).rowcount
            if renewed:
                conn.execute(
                    "UPDATE ab_reservations SET expires_at = ? WHERE reservation_id = ?",
                    (lease_until + self.retention_s, reservation_id),
                )
            return renewed > 0

        return await self._run(renew)

    async def _do_state(self, key: str) -> CounterState:
        def state(conn: sqlite3.Connection, now: float) -> CounterState:
            spent = self._spent(conn, key, now)
            if spent is None:
                return CounterState(spent=0, reserved=0)
            (reserved,) = conn.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM ab_holds WHERE key = ? AND lease_until > ?",
                (key, now),
            ).fetchone()
            return CounterState(spent=spent, reserved=reserved)

        return await self._run(state)

    async def _do_reset(self, key: str) -> None:
        def reset(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("DELETE FROM ab_counters WHERE key = ?", (key,))
            conn.execute("DELETE FROM ab_holds WHERE key = ?", (key,))

        await self._run(reset)

    async def close(self) -> None:
        """Close the database connection; a later operation reopens it."""
        await asyncio.to_thread(self._close)

    # Helpers: run in the worker thread, inside the transaction.

    def _spent(self, conn: sqlite3.Connection, key: str, now: float) -> int | None:
        """A live counter's spend, or None (an expired counter is dropped with its holds)."""
        row = conn.execute(
            "SELECT spent, expires_at FROM ab_counters WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        spent, expires_at = row
        if expires_at is not None and expires_at <= now:
            conn.execute("DELETE FROM ab_counters WHERE key = ?", (key,))
            conn.execute("DELETE FROM ab_holds WHERE key = ?", (key,))
            return None
        return int(spent)

    def _record(
        self, conn: sqlite3.Connection, reservation_id: str, now: float
    ) -> tuple[_Charges, bool] | None:
        row = conn.execute(
            "SELECT charges, settled FROM ab_reservations "
            "WHERE reservation_id = ? AND expires_at > ?",
            (reservation_id, now),
        ).fetchone()
        if row is None:
            return None
        charges = [(str(key), expires_at) for key, expires_at in json.loads(row[0])]
        return charges, bool(row[1])

    def _apply(
        self,
        conn: sqlite3.Connection,
        reservation_id: str,
        charges: _Charges,
        actual: tuple[int, ...],
        now: float,
    ) -> None:
        for (key, expires_at), amount in zip(charges, actual, strict=True):
            conn.execute(
                "DELETE FROM ab_holds WHERE key = ? AND reservation_id = ?", (key, reservation_id)
            )
            if amount == 0:
                continue
            if self._spent(conn, key, now) is not None:
                conn.execute(
                    "UPDATE ab_counters SET spent = spent + ? WHERE key = ?", (amount, key)
                )
            else:
                if expires_at is not None and expires_at <= now:
                    expires_at = now + self.grace_s  # a late settle revives its window
                conn.execute(
                    "INSERT INTO ab_counters (key, spent, expires_at) VALUES (?, ?, ?)",
                    (key, amount, expires_at),
                )
        conn.execute(
            "INSERT OR REPLACE INTO ab_reservations VALUES (?, ?, 1, ?)",
            (reservation_id, json.dumps(charges), now + self.retention_s),
        )

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY_S
        conn.execute(
            "DELETE FROM ab_holds WHERE key IN (SELECT key FROM ab_counters WHERE expires_at <= ?)",
            (now,),
        )
        conn.execute("DELETE FROM ab_counters WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM ab_holds WHERE lease_until <= ?", (now,))
        conn.execute("DELETE FROM ab_reservations WHERE expires_at <= ?", (now,))

    # Connection and transactions.

    async def _run(self, operation: Callable[[sqlite3.Connection, float], _T]) -> _T:
        return await asyncio.to_thread(self._transaction, operation)

    def _transaction(self, operation: Callable[[sqlite3.Connection, float], _T]) -> _T:
        with self._lock:
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = operation(conn, self._clock())
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                if any(reply in str(exc) for reply in _MISCONFIGURED):
                    raise StoreConfigurationError(
                        f"the SQLite budget store {self.path!r} is misconfigured: {exc}; "
                        "this is not an outage, so it is raised whatever fail= says",
                        url=self.url,
                    ) from exc
                raise StoreUnavailable(
                    f"the SQLite budget store {self.path!r} failed: {exc}", url=self.url
                ) from exc

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if self.path != ":memory:":
                self._wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, waiting up to ``busy_timeout_s`` for other connections.

        Leaving a rollback journal needs the file to itself, and SQLite answers
        "database is locked" at once (without its busy handler) while another
        connection writes to a file that is not in WAL mode yet: retry until the timeout.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
