"""Where cached answers live, chosen by URL: ``memory://``, ``sqlite:///path``, ``redis://``.

A cache store maps a key (a SHA-256 hex digest) to a JSON text for ``ttl_s`` seconds.
Stores are synchronous and thread-safe; the response cache calls them inline
(``memory://``), or from a worker thread (``sqlite://``, ``redis://``) so a read or a
write never blocks the event loop. Values are JSON text, never pickles.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from cachetools import TLRUCache

from ..errors import ConfigurationError, StoreUnavailable
from ..stores.registry import build_from_url, register_in

__all__ = [
    "CacheStore",
    "MemoryCacheStore",
    "RedisCacheStore",
    "SQLiteCacheStore",
    "cache_store_from_url",
    "known_cache_schemes",
    "register_cache_store",
]

DEFAULT_MAXSIZE = 10_000
DEFAULT_MAX_VALUE_BYTES = 1 << 20


@runtime_checkable
class CacheStore(Protocol):
    """What the response cache needs of a store (bring your own with these members)."""

    sync_reads: bool
    """True when ``get`` (or ``get_now``, when the store has it: a read bounded for the
    event loop) is fast enough to call while a streamed run starts (``Runner.run_streamed``
    is synchronous)."""
    inline: bool
    """True when ``get`` and ``set`` never block (called on the event loop's thread)."""

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None (absent or expired)."""
        ...

    def set(self, key: str, value: str, ttl_s: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds (replacing any value)."""
        ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...


class MemoryCacheStore:
    """``memory://``: one process, a ``cachetools.TLRUCache`` (per-entry TTL, then LRU).

    The lock is a ``threading.Lock`` held only around the dictionary operation.
    """

    sync_reads = True
    inline = True

    def __init__(
        self,
        url: str = "memory://",
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if url.rstrip("/") != "memory:":
            raise ConfigurationError(f"a memory cache store URL is 'memory://', got {url!r}")
        _check_positive_int("maxsize", maxsize)
        self.url = url
        self._lock = threading.Lock()
        self._data: TLRUCache[str, tuple[str, float]] = TLRUCache(
            maxsize=maxsize, ttu=_expires_at, timer=clock
        )

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._data.get(key)
        return None if entry is None else entry[0]

    def set(self, key: str, value: str, ttl_s: float) -> None:
        with self._lock:
            self._data[key] = (value, ttl_s)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def close(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            self._data.expire()
            return len(self._data)


def _expires_at(_key: str, value: tuple[str, float], now: float) -> float:
    return now + value[1]


class SQLiteCacheStore:
    """``sqlite:///path.db``: the processes of one machine share the file (WAL mode)."""

    sync_reads = True
    inline = False

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ConfigurationError(
                "a SQLite cache store URL is 'sqlite:///relative.db', 'sqlite:////absolute.db' "
                f"or 'sqlite:///:memory:', got {url!r}"
            )
        self.url = url
        self.path = url[len("sqlite:///") :]
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            if os.path.isdir(self.path) or not os.path.isdir(parent):
                raise ConfigurationError(
                    f"the SQLite cache store {self.path!r} must be a file in an existing directory"
                )
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                check_same_thread=False,
                isolation_level=None,
            )
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS agentbudget_cache "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL)"
            )
            self._conn = conn
        return self._conn

    def _do(self, operation: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            with self._lock:
                return operation(self._connect())
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the SQLite cache store {self.path!r} failed: {exc}") from exc

    def get(self, key: str) -> str | None:
        now = self._clock()

        def get(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM agentbudget_cache WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            return None if row is None else str(row[0])

        value: str | None = self._do(get)
        return value

    def set(self, key: str, value: str, ttl_s: float) -> None:
        now = self._clock()

        def put(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO agentbudget_cache (key, value, expires) VALUES (?, ?, ?)",
                (key, value, now + ttl_s),
            )
            conn.execute("DELETE FROM agentbudget_cache WHERE expires <= ?", (now,))

        self._do(put)

    def delete(self, key: str) -> None:
        self._do(lambda conn: conn.execute("DELETE FROM agentbudget_cache WHERE key = ?", (key,)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class RedisCacheStore:
    """``redis://host:6379/0``: many machines. One ``GET`` or ``SET ... EX`` per operation.

    Values larger than ``max_value_bytes`` are not stored (the answer is still returned).
    A streamed run is looked up while ``Runner.run_streamed`` starts, which is
    synchronous: that ``GET`` blocks the event loop for one round trip, at most
    ``streamed_read_timeout_s`` (then the run goes on as a miss, with a warning).
    ``streamed_read_timeout_s=None`` skips the read for streamed runs instead.
    """

    inline = False

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ab:cache:",
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        socket_timeout_s: float = 2.0,
        streamed_read_timeout_s: float | None = 0.05,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigurationError(
                "a Redis cache store URL is 'redis://[[user]:password@]host[:port][/db]', "
                f"got {parts.scheme}://{parts.hostname or ''}..."
            )
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a string, got {prefix!r}")
        _check_positive_int("max_value_bytes", max_value_bytes)
        try:
            import redis
        except ImportError:  # pragma: no cover - the dev extra installs it
            raise ConfigurationError(
                'the redis:// cache store needs redis-py: pip install "agentbudget-sdk[redis]"'
            ) from None
        self.url = url
        self.prefix = prefix
        self.max_value_bytes = max_value_bytes
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        if streamed_read_timeout_s is not None and (
            isinstance(streamed_read_timeout_s, bool)
            or not isinstance(streamed_read_timeout_s, int | float)
            or not 0 < streamed_read_timeout_s <= 5
        ):
            raise ConfigurationError(
                "streamed_read_timeout_s must be None or a number of seconds in (0, 5], got "
                f"{streamed_read_timeout_s!r}"
            )
        self.sync_reads = streamed_read_timeout_s is not None
        self._now = (
            None
            if streamed_read_timeout_s is None
            else redis.Redis.from_url(
                url,
                socket_timeout=streamed_read_timeout_s,
                socket_connect_timeout=streamed_read_timeout_s,
            )
        )

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._errors as exc:
            raise StoreUnavailable(f"the Redis cache store failed: {exc!r}") from exc

    def get(self, key: str) -> str | None:
        raw = self._call(lambda: self._client.get(self.prefix + key))
        if raw is None:
            return None
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)

    def get_now(self, key: str) -> str | None:
        """``get`` bounded by ``streamed_read_timeout_s``: the read a streamed run makes on
        the event loop's thread."""
        client = self._now if self._now is not None else self._client
        raw = self._call(lambda: client.get(self.prefix + key))
        if raw is None:
            return None
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)

    def set(self, key: str, value: str, ttl_s: float) -> None:
        data = value.encode("utf-8")
        if len(data) > self.max_value_bytes:
            return
        seconds = max(1, math.ceil(ttl_s))
        self._call(lambda: self._client.set(self.prefix + key, data, ex=seconds))

    def delete(self, key: str) -> None:
        self._call(lambda: self._client.delete(self.prefix + key))

    def close(self) -> None:
        self._client.close()
        if self._now is not None:
            self._now.close()


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


CacheStoreFactory = Callable[..., CacheStore]

_SCHEMES: dict[str, CacheStoreFactory] = {
    "memory": MemoryCacheStore,
    "sqlite": SQLiteCacheStore,
    "redis": RedisCacheStore,
    "rediss": RedisCacheStore,
}


def known_cache_schemes() -> list[str]:
    """The URL schemes :func:`cache_store_from_url` understands, sorted."""
    return sorted(_SCHEMES)


def register_cache_store(scheme: str, factory: CacheStoreFactory) -> None:
    """Make ``cache_store_from_url("<scheme>://...")`` build ``factory(url, **options)``.

    Raises:
        ConfigurationError: the scheme is not a valid URL scheme or ``factory`` is not callable.
    """
    register_in(_SCHEMES, scheme, factory, register="register_cache_store")


def cache_store_from_url(url: str, **options: Any) -> CacheStore:
    """Build the cache store a URL names.

    Raises:
        ConfigurationError: unknown scheme, malformed URL or an option the store does not take.
    """
    return build_from_url(
        url,
        _SCHEMES,
        options,
        what="cache store",
        examples="'memory://', 'sqlite:///cache.db' or 'redis://127.0.0.1:6379/0'",
        register="register_cache_store",
    )
