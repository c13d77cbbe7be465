"""Spend alerts: a run that costs too much, a daily spike, a user's share, a soft budget.

``Alerts`` watches finished runs. ``observe(report)`` adds the run's cost to today's
global counter and to the user's counter for today in a shared store, then evaluates
the rules on the totals the store returns - never on process memory, so several
processes (or machines, with Redis) sharing a store see one spend. Each alert fires once
per window per subject: the firing process claims ``(rule, subject, window)`` atomically
in the same store first, so a spike seen by four processes at once is reported once.

The rules (each configurable, each off with ``None`` / ``False``):

- ``run_cost``: a run's ``cost_usd`` exceeds ``run_cost_usd`` (subject: the run id).
- ``daily_spike``: today's total exceeds ``daily_spike_factor`` x the trailing 7-day
  daily average (the 7 previous days; a day without spend counts as 0). While none of
  the 7 previous days has any spend there is no history and no spike alert. Subject
  ``"global"``; once per day.
- ``user_share``: one user's spend exceeds ``user_share`` x the global budget (see
  ``Alerts``), or - with no budget - ``user_share`` x today's total, once that total is
  at least ``user_share_min_total_usd`` and somebody else spent today too (a lone user
  is always 100% of the day). Once per user per window.
- ``budget_threshold``: ``budget_alert(BudgetAlert)`` turns a soft-threshold event of
  ``Budgets`` into an ``Alert``, once per counter window across processes.
- ``forecast_exhaustion`` (opt-in, ``forecast_exhaustion_hours``): ``forecast_alert``
  (or ``check_forecast(budgets, user=...)``) fires once per counter window when a
  ``Budgets.forecast`` says the allowance will be exhausted within that many hours.

``observe`` is synchronous and does store round trips: call it off the event loop (a
sink worker thread, ``asyncio.to_thread``). It never raises ``StoreUnavailable``: a
store outage is logged, the spend it could not count is kept in memory and added with
the next report, and the rules run again then (an update applied by the store whose reply
was lost is added again: alerts err towards firing).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .budgets import Allowance, BudgetAlert, Budgets
from .errors import ConfigurationError, StoreUnavailable
from .money import nanos_to_usd, parse_usd, usd_to_nanos
from .stores.base import check_id
from .stores.redis import check_url, redact

if TYPE_CHECKING:
    from .planning import WindowForecast
    from .report import RunReport

__all__ = ["Alert", "AlertKind", "Alerts"]

logger = logging.getLogger("agentbudget")

AlertKind = Literal[
    "run_cost", "daily_spike", "user_share", "budget_threshold", "forecast_exhaustion"
]
AlertCallback = Callable[["Alert"], object]

HISTORY_DAYS = 7
DAY_COUNTER_TTL_S = 9 * 86_400  # 7 days of history + today + a day of margin
MONTH_COUNTER_TTL_S = 62 * 86_400
CLAIM_TTL_S = 2 * 86_400  # a day claim outlives its day in every time zone
MONTH_CLAIM_TTL_S = 32 * 86_400
_NANO = Decimal("0.000000001")
_PURGE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes:
        kind: ``"run_cost"``, ``"daily_spike"``, ``"user_share"``, ``"budget_threshold"``
            or ``"forecast_exhaustion"``.
        subject: the run id, ``"global"``, the user id, or the budget counter's subject.
        window: the day (``"YYYY-MM-DD"`` in the configured time zone); for a monthly
            budget share ``"YYYY-MM"``; for a budget threshold the counter's window.
        observed: what was seen: USD (``Decimal``), or tokens for a token budget; for
            ``forecast_exhaustion``, the hours left until the allowance runs out.
        threshold: the figure ``observed`` went over, in the same unit (for
            ``forecast_exhaustion``: ``forecast_exhaustion_hours``, which it is under).
        unit: ``"usd"`` or ``"tokens"`` (of the allowance, for ``forecast_exhaustion``).
        message: a readable sentence.
        run_id: the run that made the alert fire (None for budget thresholds).
        budget_alert: the ``BudgetAlert`` a ``budget_threshold`` alert comes from.
    """

    kind: AlertKind
    subject: str
    window: str
    observed: Decimal
    threshold: Decimal
    message: str
    unit: Literal["usd", "tokens"] = "usd"
    run_id: str | None = None
    budget_alert: BudgetAlert | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"agentbudget alert [{self.kind}] {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (amounts as strings: exact), as the webhook posts it."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "window": self.window,
            "observed": str(self.observed),
            "threshold": str(self.threshold),
            "unit": self.unit,
            "message": self.message,
            "run_id": self.run_id,
        }


# -- stores ----------------------------------------------------------------------------


class _AlertStore(Protocol):
    """Counters and claims. Every method may raise ``StoreUnavailable``."""

    url: str

    def add(self, increments: Sequence[tuple[str, int, int]]) -> list[int]:
        """Atomically add ``(key, amount, ttl_s)`` to each counter; the new totals."""

    def get(self, keys: Sequence[str]) -> list[int]:
        """The counters' values (0 when missing)."""

    def claim(self, key: str, ttl_s: int) -> bool:
        """True for the first caller that claims ``key`` (until it expires)."""

    def close(self) -> None: ...


class _MemoryAlertStore:
    """``memory://``: one process; a dict and a lock."""

    def __init__(self, url: str, clock: Callable[[], float]) -> None:
        self.url = url
        self._clock = clock
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, float]] = {}
        self._claims: dict[str, float] = {}
        self._next_purge = -math.inf

    def add(self, increments: Sequence[tuple[str, int, int]]) -> list[int]:
        now = self._clock()
        out = []
        with self._lock:
            if now >= self._next_purge:  # past days' counters and claims
                self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
                self._claims = {k: v for k, v in self._claims.items() if v > now}
                self._next_purge = now + _PURGE_EVERY_S
            for key, amount, ttl in increments:
                value, expires = self._counters.get(key, (0, math.inf))
                value = value + amount if expires > now else amount
                self._counters[key] = (value, now + ttl)
                out.append(value)
        return out

    def get(self, keys: Sequence[str]) -> list[int]:
        now = self._clock()
        with self._lock:
            values = [self._counters.get(key, (0, math.inf)) for key in keys]
        return [value if expires > now else 0 for value, expires in values]

    def claim(self, key: str, ttl_s: int) -> bool:
        now = self._clock()
        with self._lock:
            if self._claims.get(key, -math.inf) > now:
                return False
            self._claims[key] = now + ttl_s
            return True

    def close(self) -> None:
        pass


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ab_alert_counters (
    key TEXT PRIMARY KEY,
    total INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ab_alert_claims (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""


class _SQLiteAlertStore:
    """``sqlite:///path``: processes of one machine; WAL, a connection per thread."""

    def __init__(
        self, url: str, clock: Callable[[], float], prefix: str, busy_timeout_s: float
    ) -> None:
        path = url[len("sqlite:///") :]
        if not url.startswith("sqlite:///") or not path:
            raise ConfigurationError(
                f"a SQLite alert store URL is 'sqlite:///relative.db' or "
                f"'sqlite:////absolute.db', got {url!r}"
            )
        if path == ":memory:":
            raise ConfigurationError(
                "sqlite:///:memory: would give every thread its own empty database; use "
                "'memory://' for one process or a file path to share the counters"
            )
        self.url = url
        self.path = path
        self._clock = clock
        self._namespace = f"{prefix}|"
        self._busy_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._next_purge = -math.inf
        self._run(lambda conn: None)  # a bad path fails at construction

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SQLITE_SCHEMA)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _run(self, work: Callable[[sqlite3.Connection], Any], *, write: bool = True) -> Any:
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            message = str(exc)
            if any(text in message for text in ("unable to open", "not a database", "readonly")):
                raise ConfigurationError(
                    f"the SQLite alert store {self.path!r} cannot be used: {message}"
                ) from exc
            raise StoreUnavailable(
                f"the SQLite alert store {self.path!r} is unavailable: {message}", url=self.url
            ) from exc

    def add(self, increments: Sequence[tuple[str, int, int]]) -> list[int]:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> list[int]:
            if now >= self._next_purge:
                conn.execute("DELETE FROM ab_alert_counters WHERE expires_at <= ?", (now,))
                conn.execute("DELETE FROM ab_alert_claims WHERE expires_at <= ?", (now,))
                self._next_purge = now + _PURGE_EVERY_S
            out = []
            for name, amount, ttl in increments:
                key = self._namespace + name
                row = conn.execute(
                    "INSERT INTO ab_alert_counters (key, total, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET total = CASE WHEN expires_at > ? "
                    "THEN total + excluded.total ELSE excluded.total END, "
                    "expires_at = excluded.expires_at RETURNING total",
                    (key, amount, now + ttl, now),
                ).fetchone()
                out.append(int(row[0]))
            return out

        result: list[int] = self._run(work)
        return result

    def get(self, keys: Sequence[str]) -> list[int]:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> list[int]:
            names = [self._namespace + key for key in keys]
            marks = ",".join("?" * len(names))
            rows = conn.execute(
                f"SELECT key, total FROM ab_alert_counters WHERE key IN ({marks}) "
                "AND expires_at > ?",
                (*names, now),
            ).fetchall()
            found = {key: int(total) for key, total in rows}
            return [found.get(name, 0) for name in names]

        result: list[int] = self._run(work, write=False)
        return result

    def claim(self, key: str, ttl_s: int) -> bool:
        now = self._clock()

        key = self._namespace + "claim|" + key

        def work(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "DELETE FROM ab_alert_claims WHERE key = ? AND expires_at <= ?", (key, now)
            )
            cursor = conn.execute(
                "INSERT OR IGNORE INTO ab_alert_claims (key, expires_at) VALUES (?, ?)",
                (key, now + ttl_s),
            )
            return cursor.rowcount == 1

        result: bool = self._run(work)
        return result

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


class _RedisAlertStore:
    """``redis://``: many machines; INCRBY + EXPIRE in one MULTI, SET NX EX claims."""

    def __init__(self, url: str, prefix: str, socket_timeout_s: float) -> None:
        check_url(url)
        self.url = redact(url)
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ConfigurationError(
                f'Redis alert stores need the redis package: pip install "agentbudget-sdk[redis]" '
                f"({exc})"
            ) from exc
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.BusyLoadingError,
            redis.exceptions.ReadOnlyError,
            OSError,
        )
        # No automatic retries: an INCRBY whose reply was lost must not be applied twice.
        self._client: Any = redis.Redis.from_url(
            url,
            socket_connect_timeout=socket_timeout_s,
            socket_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._namespace = f"ab:{{{prefix}}}:alerts|"  # one hash tag: one Cluster slot

    def _call(self, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except self._errors as exc:
            raise StoreUnavailable(
                f"the Redis alert store at {self.url} is unavailable: {exc}", url=self.url
            ) from exc

    def add(self, increments: Sequence[tuple[str, int, int]]) -> list[int]:
        def work() -> list[int]:
            pipe = self._client.pipeline(transaction=True)
            for key, amount, ttl in increments:
                pipe.incrby(self._namespace + key, amount)
                pipe.expire(self._namespace + key, ttl)
            replies = pipe.execute()
            return [int(value) for value in replies[::2]]

        result: list[int] = self._call(work)
        return result

    def get(self, keys: Sequence[str]) -> list[int]:
        values = self._call(lambda: self._client.mget([self._namespace + key for key in keys]))
        return [int(value) if value is not None else 0 for value in values]

    def claim(self, key: str, ttl_s: int) -> bool:
        claimed = self._call(
            lambda: self._client.set(self._namespace + "claim|" + key, b"1", nx=True, ex=ttl_s)
        )
        return bool(claimed)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS ab_alert_counters (
    key TEXT PRIMARY KEY,
    total BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS ab_alert_claims (
    key TEXT PRIMARY KEY,
    expires_at DOUBLE PRECISION NOT NULL
);
"""
_POSTGRES_SCHEMA_LOCK = 0x61625F616C657274  # pg_advisory_xact_lock id: "ab_alert"


class _PostgresAlertStore:
    """``postgresql://``: many machines; psycopg 3, a connection per thread, one
    transaction per operation (counters updated in key order: no deadlocks)."""

    def __init__(self, url: str, clock: Callable[[], float], prefix: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if not parts.netloc and not parts.path.strip("/"):
            raise ConfigurationError(
                f"a PostgreSQL alert store URL is 'postgresql://user@host:5432/db', got {url!r}"
            )
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigurationError(
                "PostgreSQL alert stores need psycopg 3: pip install "
                f'"agentbudget-sdk[postgres]" ({exc})'
            ) from exc
        self._psycopg = psycopg
        self.url = redact(url)
        self._raw_url = url
        self._password = parts.password
        self._clock = clock
        self._namespace = f"{prefix}|"
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._schema_ready = False
        self._next_purge = -math.inf

    def _connect(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._psycopg.connect(
                self._raw_url,
                connect_timeout=max(1, math.ceil(self._timeout_s)),
                options=f"-c statement_timeout={int(self._timeout_s * 1000)}",
            )
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
            if not self._schema_ready:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_POSTGRES_SCHEMA_LOCK,))
                    for statement in _POSTGRES_SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                self._schema_ready = True
        return conn

    def _run(self, work: Callable[[Any], Any]) -> Any:
        try:
            conn = self._connect()
            with conn.transaction():
                return work(conn)
        except self._psycopg.OperationalError as exc:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
                self._local.conn = None
            message = str(exc).strip() or type(exc).__name__
            if self._password:
                message = message.replace(self._password, "***")
            raise StoreUnavailable(
                f"the PostgreSQL alert store at {self.url} is unavailable: {message}",
                url=self.url,
            ) from exc

    def add(self, increments: Sequence[tuple[str, int, int]]) -> list[int]:
        now = self._clock()

        def work(conn: Any) -> list[int]:
            if now >= self._next_purge:
                conn.execute("DELETE FROM ab_alert_counters WHERE expires_at <= %s", (now,))
                conn.execute("DELETE FROM ab_alert_claims WHERE expires_at <= %s", (now,))
                self._next_purge = now + _PURGE_EVERY_S
            totals: dict[str, int] = {}
            for name, amount, ttl in sorted(increments):
                row = conn.execute(
                    "INSERT INTO ab_alert_counters AS c (key, total, expires_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET total = CASE "
                    "WHEN c.expires_at > %s THEN c.total + excluded.total "
                    "ELSE excluded.total END, expires_at = excluded.expires_at RETURNING total",
                    (self._namespace + name, amount, now + ttl, now),
                ).fetchone()
                totals[name] = int(row[0])
            return [totals[name] for name, _, _ in increments]

        result: list[int] = self._run(work)
        return result

    def get(self, keys: Sequence[str]) -> list[int]:
        now = self._clock()
        names = [self._namespace + key for key in keys]

        def work(conn: Any) -> list[int]:
            rows = conn.execute(
                "SELECT key, total FROM ab_alert_counters WHERE key = ANY(%s) AND expires_at > %s",
                (names, now),
            ).fetchall()
            found = {key: int(total) for key, total in rows}
            return [found.get(name, 0) for name in names]

        result: list[int] = self._run(work)
        return result

    def claim(self, key: str, ttl_s: int) -> bool:
        now = self._clock()
        name = self._namespace + "claim|" + key

        def work(conn: Any) -> bool:
            conn.execute(
                "DELETE FROM ab_alert_claims WHERE key = %s AND expires_at <= %s", (name, now)
            )
            cursor = conn.execute(
                "INSERT INTO ab_alert_claims (key, expires_at) VALUES (%s, %s) "
                "ON CONFLICT (key) DO NOTHING",
                (name, now + ttl_s),
            )
            return bool(cursor.rowcount == 1)

        result: bool = self._run(work)
        return result

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()


_SCHEMES = ("memory", "sqlite", "redis", "rediss", "postgresql", "postgres")


def _store_from_url(
    url: str, *, clock: Callable[[], float], prefix: str, timeout_s: float
) -> _AlertStore:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            "store must be a URL: 'memory://', 'sqlite:///alerts.db', "
            f"'redis://127.0.0.1:6379/0' or 'postgresql://host/db', got {url!r}"
        )
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return _MemoryAlertStore(url, clock)
    if scheme == "sqlite":
        return _SQLiteAlertStore(url, clock, prefix, timeout_s)
    if scheme in ("redis", "rediss"):
        return _RedisAlertStore(url, prefix, timeout_s)
    if scheme in ("postgresql", "postgres"):
        return _PostgresAlertStore(url, clock, prefix, timeout_s)
    raise ConfigurationError(
        f"unknown alert store scheme {scheme!r} in {url!r}; known schemes: {', '.join(_SCHEMES)}"
    )


class _LocalState:
    """What one process remembers between reports (shared by ``for_budgets`` copies):
    spend the store has not counted yet, and the claims it already saw taken today."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, tuple[int, int]] = {}  # key -> (nano-USD, ttl)
        self.claimed: set[str] = set()
        self.claimed_day = ""

    def take_pending(self) -> dict[str, tuple[int, int]]:
        with self.lock:
            pending, self.pending = self.pending, {}
            return pending

    def keep_pending(self, batch: Mapping[str, tuple[int, int]]) -> None:
        with self.lock:
            for key, (amount, ttl) in batch.items():
                self.pending[key] = (self.pending.get(key, (0, ttl))[0] + amount, ttl)

    def seen(self, claim: str, day: str) -> bool:
        with self.lock:
            if day != self.claimed_day:
                self.claimed, self.claimed_day = set(), day
            return claim in self.claimed

    def remember(self, claim: str, day: str) -> None:
        with self.lock:
            if day == self.claimed_day:
                self.claimed.add(claim)


# -- validation --------------------------------------------------------------------------


def _money(name: str, value: object) -> Decimal:
    try:
        return parse_usd(value, field=name)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _ratio(name: str, value: object) -> Decimal:
    """A ratio given as int, float, str or Decimal, as an exact Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    try:
        ratio = Decimal(str(value).strip())
    except ArithmeticError:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if not ratio.is_finite():
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    return ratio


def _callbacks(on_alert: object) -> tuple[AlertCallback, ...]:
    if on_alert is None:
        return ()
    if callable(on_alert):
        return (on_alert,)
    if isinstance(on_alert, str | bytes) or not isinstance(on_alert, Iterable):
        raise ConfigurationError(
            f"on_alert takes a callable or a list of callables, got {on_alert!r}"
        )
    callbacks = tuple(on_alert)
    for callback in callbacks:
        if not callable(callback):
            raise ConfigurationError(f"on_alert callbacks must be callable, got {callback!r}")
    return callbacks


def _global_usd_allowance(budgets: Budgets) -> Allowance | None:
    """The global USD allowance per day (preferred) or per month of ``budgets``."""
    if not isinstance(budgets, Budgets):
        raise ConfigurationError(f"budgets must be an agentbudget.Budgets, got {budgets!r}")
    found = {
        a.window: a
        for a in budgets.allowances
        if a.per == "global" and a.usd is not None and a.window in ("day", "month")
    }
    return found.get("day") or found.get("month")


def _key(*parts: str) -> str:
    """An injective key: every free-text part is length-prefixed."""
    return "|".join(f"{len(part)}:{part}" for part in parts)


# -- the rules -----------------------------------------------------------------------------


class Alerts:
    """Spend alerts evaluated on totals kept in a shared store; see the module docs.

    Args:
        run_cost_usd: alert when one run costs more than this (USD); None: off.
        daily_spike_factor: alert when today's spend is over this many times the trailing
            7-day daily average (a number > 1); None: off.
        user_share: alert when one user's spend is over this share (0 < share <= 1) of
            the global budget, or of today's total when there is no budget; None: off.
        budget_thresholds: turn ``BudgetAlert`` s given to ``budget_alert`` into alerts;
            False: ``budget_alert`` ignores them.
        forecast_exhaustion_hours: alert (once per counter window) when a forecast given
            to ``forecast_alert`` exhausts its allowance within this many hours; None: off.
        on_alert: a callable or a list of callables, each called with every ``Alert``.
        store: where the totals and claims live: ``memory://`` (one process),
            ``sqlite:///alerts.db`` (processes of one machine), ``redis://host:6379/0``
            or ``postgresql://user@host/db`` (many machines; extra ``postgres``).
        global_budget_usd: the global budget per day that ``user_share`` compares a
            user's daily spend with. Wins over ``budgets``.
        budgets: a ``Budgets`` whose global USD allowance per day (or else per month) is
            the budget of ``user_share``; with a monthly one the user's spend this month
            is compared and the window is ``"YYYY-MM"``.
        user_share_min_total_usd: with no budget, ``user_share`` waits until today's total
            reaches this amount (default $1.00).
        tz: the time zone of days (default UTC).
        clock: Unix time in seconds (tests pass a fake clock).
        log: log every alert as a WARNING on the ``agentbudget`` logger.
        prefix: the namespace of the store keys (and Redis hash tag); no braces.
        timeout_s: SQLite busy timeout and Redis socket timeout, in seconds.

    Raises:
        ConfigurationError: any invalid argument, with what to fix.
    """

    def __init__(
        self,
        *,
        run_cost_usd: Decimal | str | int | None = "1.00",
        daily_spike_factor: Decimal | str | int | float | None = 2,
        user_share: Decimal | str | int | float | None = 0.10,
        budget_thresholds: bool = True,
        on_alert: AlertCallback | Iterable[AlertCallback] | None = (),
        store: str = "memory://",
        global_budget_usd: Decimal | str | int | None = None,
        budgets: Budgets | None = None,
        user_share_min_total_usd: Decimal | str | int = "1.00",
        tz: str = "UTC",
        clock: Callable[[], float] = time.time,
        log: bool = True,
        prefix: str = "agentbudget",
        timeout_s: float = 2.0,
        forecast_exhaustion_hours: Decimal | str | int | float | None = None,
    ) -> None:
        self.forecast_exhaustion_hours: Decimal | None = None
        if forecast_exhaustion_hours is not None:
            hours = _ratio("forecast_exhaustion_hours", forecast_exhaustion_hours)
            if hours <= 0:
                raise ConfigurationError(
                    f"forecast_exhaustion_hours must be more than 0, got "
                    f"{forecast_exhaustion_hours!r}"
                )
            self.forecast_exhaustion_hours = hours
        self.run_cost_usd = None if run_cost_usd is None else _money("run_cost_usd", run_cost_usd)
        self.daily_spike_factor: Decimal | None = None
        if daily_spike_factor is not None:
            factor = _ratio("daily_spike_factor", daily_spike_factor)
            if factor <= 1:
                raise ConfigurationError(
                    f"daily_spike_factor must be greater than 1 (2 means twice the 7-day "
                    f"average), got {daily_spike_factor!r}"
                )
            self.daily_spike_factor = factor
        self.user_share: Decimal | None = None
        if user_share is not None:
            share = _ratio("user_share", user_share)
            if not 0 < share <= 1:
                raise ConfigurationError(
                    f"user_share must be a fraction with 0 < share <= 1 (0.10 is 10%), got "
                    f"{user_share!r}"
                )
            self.user_share = share
        if not isinstance(budget_thresholds, bool):
            raise ConfigurationError(
                f"budget_thresholds must be True or False, got {budget_thresholds!r}"
            )
        self.budget_thresholds = budget_thresholds
        self.callbacks = _callbacks(on_alert)
        self.global_budget_usd = (
            None if global_budget_usd is None else _money("global_budget_usd", global_budget_usd)
        )
        if self.global_budget_usd is not None and self.global_budget_usd <= 0:
            raise ConfigurationError(
                f"global_budget_usd must be more than 0, got {global_budget_usd!r}"
            )
        self.budget_allowance = None if budgets is None else _global_usd_allowance(budgets)
        self.user_share_min_total_usd = _money("user_share_min_total_usd", user_share_min_total_usd)
        if not isinstance(tz, str):
            raise ConfigurationError(f"tz must be a time zone name like 'UTC', got {tz!r}")
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"unknown time zone {tz!r}") from None
        if not callable(clock):
            raise ConfigurationError(f"clock must be a callable returning seconds, got {clock!r}")
        self.clock = clock
        if not isinstance(log, bool):
            raise ConfigurationError(f"log must be True or False, got {log!r}")
        self.log = log
        check_id("prefix", prefix)
        if "{" in prefix or "}" in prefix or "|" in prefix:
            raise ConfigurationError(f"prefix must not contain braces or '|', got {prefix!r}")
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s < math.inf
        ):
            raise ConfigurationError(f"timeout_s must be a positive number, got {timeout_s!r}")
        self.prefix = prefix
        self._store = _store_from_url(store, clock=clock, prefix=prefix, timeout_s=timeout_s)
        self._local = _LocalState()

    @property
    def store_url(self) -> str:
        """The store's URL (a Redis password shown as ``***``)."""
        return self._store.url

    def for_budgets(self, budgets: Budgets) -> Alerts:
        """These alerts with ``budgets``' global USD allowance as the ``user_share`` budget.

        The copy shares the store connection (close either) and what this process keeps
        between reports. An explicit ``global_budget_usd`` wins.
        """
        allowance = _global_usd_allowance(budgets)
        bound = copy.copy(self)
        bound.budget_allowance = allowance
        return bound

    def spent(self, *, user: str | None = None, day: date | None = None) -> Decimal:
        """What the store counts for ``day`` (default today): the global total, or
        ``user``'s. Spend kept in memory during a store outage is not included.

        Raises:
            StoreUnavailable: the store cannot be reached now.
        """
        window = (day or self._today(self.clock())).isoformat()
        key = _key("day", window) if user is None else _key("user", user, window)
        return nanos_to_usd(self._store.get([key])[0])

    def close(self) -> None:
        """Close the store's connections."""
        self._store.close()

    # -- windows ------------------------------------------------------------------------

    def _today(self, now: float) -> date:
        return datetime.fromtimestamp(now, self.tz).date()

    def _budget(self) -> tuple[int, Literal["day", "month"]] | None:
        """The ``user_share`` budget in nano-USD and its window, or None."""
        if self.global_budget_usd is not None:
            return usd_to_nanos(self.global_budget_usd, round_up=False), "day"
        allowance = self.budget_allowance
        if allowance is None:
            return None
        assert isinstance(allowance.usd, Decimal)
        window: Literal["day", "month"] = "month" if allowance.window == "month" else "day"
        return usd_to_nanos(allowance.usd, round_up=False), window

    # -- observe ------------------------------------------------------------------------

    def observe(self, report: RunReport) -> list[Alert]:
        """Count a finished run's cost and evaluate the rules; the alerts it fired.

        Synchronous (store round trips): call it off the event loop. Never raises
        ``StoreUnavailable``: an outage is logged and the uncounted spend is retried with
        the next report.
        """
        cost = report.cost_usd if report.cost_usd is not None else Decimal(0)
        nanos = usd_to_nanos(cost)
        now = self.clock()
        today = self._today(now)
        day = today.isoformat()
        budget = self._budget()
        increments: list[tuple[str, int, int]] = [(_key("day", day), nanos, DAY_COUNTER_TTL_S)]
        if report.user is not None:
            increments.append((_key("user", report.user, day), nanos, DAY_COUNTER_TTL_S))
            if budget is not None and budget[1] == "month":
                month = today.strftime("%Y-%m")
                increments.append((_key("user", report.user, month), nanos, MONTH_COUNTER_TTL_S))
        pending = self._local.take_pending()
        if nanos == 0 and not pending:
            return []  # nothing changed since the rules last ran
        batch = dict(pending)
        for key, amount, ttl in increments:
            previous = batch.get(key, (0, ttl))[0]
            batch[key] = (previous + amount, ttl)
        keys = list(batch)
        try:
            totals = dict(zip(keys, self._store.add([(k, *batch[k]) for k in keys]), strict=True))
        except StoreUnavailable as exc:
            self._local.keep_pending(batch)
            logger.warning(
                "agentbudget: alerts could not count run %s (%s); its spend is kept and "
                "counted with the next report",
                report.run_id,
                exc,
            )
            return []
        return self._fire(self._evaluate(report, cost, today, totals, budget))

    def _evaluate(
        self,
        report: RunReport,
        cost: Decimal,
        today: date,
        totals: Mapping[str, int],
        budget: tuple[int, Literal["day", "month"]] | None,
    ) -> list[Alert]:
        day = today.isoformat()
        day_total = totals[_key("day", day)]
        out: list[Alert] = []
        if self.run_cost_usd is not None and cost > self.run_cost_usd:
            out.append(
                Alert(
                    kind="run_cost",
                    subject=report.run_id,
                    window=day,
                    observed=cost,
                    threshold=self.run_cost_usd,
                    message=(
                        f"run {report.run_id} (user {report.user}, agent {report.agent}) cost "
                        f"${cost}, over the ${self.run_cost_usd} per-run threshold"
                    ),
                    run_id=report.run_id,
                )
            )
        spike_claim = _key("daily_spike", "", "global", day)
        if (
            self.daily_spike_factor is not None
            and day_total > 0
            and not self._local.seen(spike_claim, day)  # fired today: no history read
        ):
            days = [(today - timedelta(days=n)).isoformat() for n in range(1, HISTORY_DAYS + 1)]
            try:
                history = sum(self._store.get([_key("day", d) for d in days]))
            except StoreUnavailable as exc:
                logger.warning(
                    "agentbudget: alerts could not read the 7-day history (%s); the spike "
                    "rule runs again with the next report",
                    exc,
                )
                history = 0
            limit = self.daily_spike_factor * Decimal(history) / HISTORY_DAYS
            if history > 0 and day_total > limit:
                average = nanos_to_usd(history) / HISTORY_DAYS
                out.append(
                    Alert(
                        kind="daily_spike",
                        subject="global",
                        window=day,
                        observed=nanos_to_usd(day_total),
                        threshold=(limit * _NANO).quantize(_NANO),
                        message=(
                            f"spend on {day} is ${nanos_to_usd(day_total)}, over "
                            f"{self.daily_spike_factor}x the 7-day daily average of "
                            f"${average.quantize(_NANO)}"
                        ),
                        run_id=report.run_id,
                    )
                )
        if self.user_share is not None and report.user is not None:
            out.extend(self._user_share(report, today, totals, budget, day_total))
        return out

    def _user_share(
        self,
        report: RunReport,
        today: date,
        totals: Mapping[str, int],
        budget: tuple[int, Literal["day", "month"]] | None,
        day_total: int,
    ) -> list[Alert]:
        assert self.user_share is not None and report.user is not None
        user = report.user
        day = today.isoformat()
        if budget is not None:
            amount, per = budget
            window = today.strftime("%Y-%m") if per == "month" else day
            spent = totals[_key("user", user, window)]
            of = f"the global {'monthly' if per == 'month' else 'daily'} budget of "
            base = amount
        else:
            window = day
            spent = totals[_key("user", user, day)]
            if day_total < usd_to_nanos(self.user_share_min_total_usd) or spent >= day_total:
                return []  # too little spend today, or nobody else spent: no share to speak of
            of = "today's total of "
            base = day_total
        limit = self.user_share * base
        if spent <= limit:
            return []
        return [
            Alert(
                kind="user_share",
                subject=user,
                window=window,
                observed=nanos_to_usd(spent),
                threshold=(limit * _NANO).quantize(_NANO),
                message=(
                    f"user {user} spent ${nanos_to_usd(spent)} in {window}, over "
                    f"{self.user_share:%} of {of}${nanos_to_usd(base)}"
                ),
                run_id=report.run_id,
            )
        ]

    # -- budget thresholds --------------------------------------------------------------

    def budget_alert(self, alert: BudgetAlert) -> list[Alert]:
        """Turn a ``Budgets`` soft-threshold event into an ``Alert``, once per counter
        window across the processes sharing the store; the alerts it fired.

        Usable as (or from) ``Budgets(on_alert=...)``; synchronous (one store round
        trip): call it off the event loop. Never raises ``StoreUnavailable``.
        """
        if not isinstance(alert, BudgetAlert):
            raise TypeError(f"budget_alert takes a BudgetAlert, got {alert!r}")
        if not self.budget_thresholds:
            return []
        allowance = alert.allowance
        soft = Decimal(str(allowance.soft if allowance.soft is not None else 1))
        if alert.unit == "nanousd":
            unit: Literal["usd", "tokens"] = "usd"
            observed = nanos_to_usd(alert.spent)
            threshold = (soft * Decimal(alert.limit) * _NANO).quantize(_NANO)
        else:
            unit = "tokens"
            observed = Decimal(alert.spent)
            threshold = soft * Decimal(alert.limit)
        converted = Alert(
            kind="budget_threshold",
            subject=alert.subject,
            window=alert.window,
            observed=observed,
            threshold=threshold,
            message=str(alert),
            unit=unit,
            budget_alert=alert,
        )
        return self._fire([converted], extra=f"{allowance.label}|{alert.unit}")

    # -- forecasts ----------------------------------------------------------------------

    def forecast_alert(self, forecast: WindowForecast) -> list[Alert]:
        """Fire ``forecast_exhaustion`` when ``forecast`` (from ``Budgets.forecast``)
        exhausts its allowance within ``forecast_exhaustion_hours``: once per counter
        window across the processes sharing the store. Synchronous (one store round trip
        when it fires). Never raises ``StoreUnavailable``."""
        hours = forecast.hours_left
        if self.forecast_exhaustion_hours is None or hours is None:
            return []
        if hours > self.forecast_exhaustion_hours:
            return []
        usd = forecast.unit == "nanousd"
        limit = nanos_to_usd(forecast.limit) if usd else Decimal(forecast.limit)
        projected = forecast.projected if forecast.projected is not None else forecast.limit
        assert forecast.exhausts_at is not None
        alert = Alert(
            kind="forecast_exhaustion",
            subject=forecast.subject,
            window=forecast.window,
            observed=hours,
            threshold=self.forecast_exhaustion_hours,
            message=(
                f"{forecast.allowance} {forecast.subject!r} window {forecast.window} is "
                f"forecast to exhaust its {'$' if usd else ''}{limit}"
                f"{'' if usd else ' tokens'} at {forecast.exhausts_at:%Y-%m-%d %H:%M} UTC, "
                f"in {hours} hours ({forecast.basis}; "
                f"{nanos_to_usd(projected) if usd else projected} projected by the window's "
                "end)"
            ),
            unit="usd" if usd else "tokens",
        )
        return self._fire([alert], extra=f"{forecast.allowance}|{forecast.unit}")

    async def check_forecast(
        self,
        budgets: Budgets,
        *,
        user: str | None = None,
        team: str | None = None,
        ledger: Any = None,
    ) -> list[Alert]:
        """``budgets.forecast(...)`` for a user or team, each window through
        ``forecast_alert`` (in a worker thread); the alerts it fired."""
        if self.forecast_exhaustion_hours is None:
            return []
        fired: list[Alert] = []
        for forecast in await budgets.forecast(user=user, team=team, ledger=ledger):
            fired.extend(await asyncio.to_thread(self.forecast_alert, forecast))
        return fired

    # -- delivery -----------------------------------------------------------------------

    def _fire(self, candidates: list[Alert], *, extra: str = "") -> list[Alert]:
        fired = []
        for alert in candidates:
            # a day claim outlives its day; month windows (a monthly budget's share, a
            # budget counter's window) keep theirs for a month
            daily = alert.kind != "budget_threshold" and len(alert.window) == len("YYYY-MM-DD")
            ttl = CLAIM_TTL_S if daily else MONTH_CLAIM_TTL_S
            claim = _key(alert.kind, extra, alert.subject, alert.window)
            if self._local.seen(claim, self._today(self.clock()).isoformat()):
                continue  # this process saw the claim taken: no round trip
            try:
                claimed = self._store.claim(claim, ttl)
            except StoreUnavailable as exc:
                # not delivered: the rule runs again with the next report (or threshold)
                logger.warning("agentbudget: alerts could not claim %s (%s)", alert, exc)
                continue
            if claimed:
                fired.append(alert)
                self.deliver(alert)
            if daily and alert.kind != "run_cost":  # run ids do not come back
                self._local.remember(claim, alert.window)
        return fired

    def deliver(self, alert: Alert) -> None:
        """Log ``alert`` (when ``log``) and pass it to every callback; a callback that
        raises is logged and the others still run."""
        if self.log:
            logger.warning("%s", alert)
        for callback in self.callbacks:
            try:
                callback(alert)
            except Exception:
                logger.exception("agentbudget: the alert callback %r raised", callback)

    # -- webhook ------------------------------------------------------------------------

    @staticmethod
    def webhook(
        url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 5.0
    ) -> Callable[[Alert], None]:
        """A ready ``on_alert`` callback that POSTs each alert as JSON (``Alert.to_dict``).

        A response other than 2xx raises ``httpx.HTTPStatusError`` (logged by delivery).

        Raises:
            ConfigurationError: the URL is not http(s), the headers are not strings, or
                the timeout is not a positive number.
        """
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"webhook needs an http:// or https:// URL, got {url!r}")
        sent = dict(headers or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in sent.items()):
            raise ConfigurationError(f"webhook headers must map str to str, got {headers!r}")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < math.inf
        ):
            raise ConfigurationError(f"webhook timeout must be a positive number, got {timeout!r}")
        http = _http_client_module()
        sent.setdefault("content-type", "application/json")

        def post(alert: Alert) -> None:
            body = json.dumps(alert.to_dict()).encode()
            response = http.post(url, content=body, headers=sent, timeout=timeout)
            response.raise_for_status()

        post.__qualname__ = f"webhook({redact(url)!r})"
        return post


def _http_client_module() -> Any:
    """The httpx package: ``httpx2`` (what recent ``openai`` installs) or ``httpx``."""
    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ConfigurationError(
        "Alerts.webhook needs httpx: pip install httpx (the openai package usually brings it)"
    )
