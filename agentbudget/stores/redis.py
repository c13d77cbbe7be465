"""``redis://`` and ``rediss://``: counters in Redis, shared by many processes and machines."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

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
    WindowMismatch,
    check_id,
    check_seconds,
    settle_error,
)

__all__ = ["RedisStore"]

logger = logging.getLogger("agentbudget.stores")

_T = TypeVar("_T")

# Response errors that mean "the server cannot serve now", not "the store is misconfigured".
_UNAVAILABLE_REPLIES = (
    "OOM",
    "LOADING",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "BUSY",
    "READONLY",
    "FAILOVER",
    "NOREPLICAS",
)
# Replies raised by a bug in our own scripts: re-raised as they are.
_SCRIPT_ERRORS = ("user_script", "ERR Error running script")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def redact(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def check_url(url: str) -> None:
    """Raise ConfigurationError unless ``url`` is ``redis[s]://[[user]:password@]host[:port][/db]``."""
    shown = redact(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigurationError(
            f"a Redis store URL is 'redis://[[user]:password@]host[:port][/db]', got {shown!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigurationError(f"the port of the Redis URL {shown!r} is not a number") from None
    db = parts.path[1:] if parts.path.startswith("/") else parts.path
    query_db = parse_qs(parts.query).get("db")
    for value in ([db] if db else []) + (query_db or []):
        if not (value.isascii() and value.isdigit()):
            raise ConfigurationError(
                f"the database of the Redis URL {shown!r} must be a number (like /0), got {value!r}"
            )


class _Script:
    """A Lua script shipped as package data, called by SHA."""

    def __init__(self, name: str) -> None:
        lua = resources.files("agentbudget.stores") / "lua"
        self.text = (lua / "common.lua").read_text("utf-8") + (lua / name).read_text("utf-8")
        self.sha = hashlib.sha1(self.text.encode("utf-8")).hexdigest()


class RedisStore(BaseStore, SpendRecorder, LeaseRenewer):
    """Budget counters in Redis (6.2+), one Lua script call per operation.

    Every reserve, settle and state is exactly one ``EVALSHA`` round trip (a script
    missing on the server, after a restart or ``SCRIPT FLUSH``, is loaded and the call
    retried). Counter keys are SHA-256 digests of the policy's keys, so keys of any
    length and characters never collide. Every key of a store lives under one Redis
    Cluster hash tag, ``ab:{<prefix>}:...``, so a store's counters and reservations
    sit on one slot and a script may touch all of them. Run Redis with
    ``maxmemory-policy noeviction``: an evicted reservation record loses spend.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://...`` (TLS).
        prefix: the namespace (and hash tag) of this store's keys; no braces.
        grace_s: seconds a counter outlives its window.
        retention_s: seconds a reservation record outlives its lease or its settle.
        connect_timeout_s: TCP connect timeout.
        socket_timeout_s: timeout of one command.
        max_connections: size of the connection pool (callers wait for a free one).
        client: a ``redis.asyncio`` client to use instead of one built from ``url``
            (a ``RedisCluster``, or custom TLS); the store does not close it.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "agentbudget",
        grace_s: float = DEFAULT_GRACE_S,
        retention_s: float = DEFAULT_RETENTION_S,
        connect_timeout_s: float = 1.0,
        socket_timeout_s: float = 2.0,
        max_connections: int = 64,
        client: Any = None,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ConfigurationError(f"a Redis store URL is 'redis://host:port/db', got {url!r}")
        check_url(url)
        super().__init__(redact(url))
        self._password = urlsplit(url).password
        self.grace_s = check_seconds("grace_s", grace_s, allow_zero=True)
        self.retention_s = check_seconds("retention_s", retention_s)
        check_id("prefix", prefix)
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(f"prefix must not contain braces, got {prefix!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ConfigurationError(f"max_connections must be an int, got {max_connections!r}")
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections}")
        self.prefix = prefix
        self._namespace = f"ab:{{{prefix}}}:"
        try:
            import redis.asyncio as aioredis
            from redis import exceptions
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ConfigurationError(
                "the Redis store needs the redis package: "
                f'pip install "agentbudget-sdk[redis]" ({exc})'
            ) from exc
        self._exceptions = exceptions
        self._unavailable: tuple[type[BaseException], ...] = (
            exceptions.ConnectionError,
            exceptions.TimeoutError,
            exceptions.ReadOnlyError,
            exceptions.OutOfMemoryError,
            exceptions.TryAgainError,
            exceptions.ClusterDownError,
            asyncio.TimeoutError,
            OSError,
        )
        self._misconfigured: tuple[type[BaseException], ...] = (
            exceptions.AuthenticationError,
            exceptions.AuthorizationError,
            exceptions.AuthenticationWrongNumberOfArgsError,
            exceptions.NoPermissionError,
            exceptions.InvalidResponse,
            exceptions.DataError,
            ssl.SSLCertVerificationError,
        )
        # No automatic retries: a reserve whose reply was lost must not run twice.
        self._pool_options: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": check_seconds("connect_timeout_s", connect_timeout_s)
            + check_seconds("socket_timeout_s", socket_timeout_s),
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": socket_timeout_s,
            "retry": Retry(NoBackoff(), 0),
        }
        self._aioredis = aioredis
        self._raw_url = url
        self._injected: Any = client
        # redis.asyncio connections belong to the loop that opened them: one client per
        # event loop, closed when that loop shuts down (asyncio.run, Runner.run_sync).
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}
        self._clients_lock = threading.Lock()
        if client is None:
            self._new_client()  # a URL redis-py cannot use fails now, not at the first call
        self._reserve = _Script("reserve.lua")
        self._settle = _Script("settle.lua")
        self._state = _Script("state.lua")
        self._renew = _Script("renew.lua")

    def counter_key(self, key: str) -> str:
        """The Redis key of a counter's hash (its holds zset ends ``:h:`` instead)."""
        return f"{self._namespace}c:{_digest(key)}"

    def _holds_key(self, key: str) -> str:
        return f"{self._namespace}h:{_digest(key)}"

    def _record_key(self, reservation_id: str) -> str:
        return f"{self._namespace}r:{_digest(reservation_id)}"

    async def _do_reserve(
        self, charges: tuple[Charge, ...], reservation_id: str, lease_s: float
    ) -> ReserveResult:
        keys = [self._record_key(reservation_id)]
        args: list[str | int] = [
            _digest(reservation_id),
            max(1, round(lease_s * 1000)),
            round(self.retention_s * 1000),
            round(self.grace_s * 1000),
        ]
        for charge in charges:
            keys += [self.counter_key(charge.key), self._holds_key(charge.key)]
            args += [charge.limit, charge.amount, self._ttl_ms(charge)]
            if charge.window is None:
                args += [-1, -1]
            else:
                args += [math.floor(charge.window[0] * 1000), math.floor(charge.window[1] * 1000)]
        reply = await self._call(self._reserve, keys, args)
        if reply[0] == -3:
            raise WindowMismatch(int(reply[1]) / 1000)
        if reply[0] == -1:
            raise ConfigurationError(
                f"reservation id {reservation_id!r} was already used; use a fresh id"
            )
        if reply[0] == 0:
            return ReserveResult(False, reservation_id, int(reply[1]), int(reply[2]))
        return ReserveResult(True, reservation_id)

    async def _do_settle(self, reservation_id: str, actual: tuple[int, ...] | None) -> None:
        mode = "release" if actual is None else "settle"
        amounts = actual or ()
        args: list[str | int] = [
            _digest(reservation_id),
            round(self.retention_s * 1000),
            round(self.grace_s * 1000),
            mode,
            len(amounts),
            *amounts,
        ]
        reply = await self._call(self._settle, [self._record_key(reservation_id)], args)
        if reply[0] == -1:
            raise settle_error(reservation_id, None, len(amounts))
        if reply[0] == -2:
            raise settle_error(reservation_id, int(reply[1]), len(amounts))

    async def _do_record(
        self, reservation_id: str, charges: tuple[Charge, ...], actual: tuple[int, ...]
    ) -> bool:
        keys = [self._record_key(reservation_id)]
        for charge in charges:
            keys += [self.counter_key(charge.key), self._holds_key(charge.key)]
        args: list[str | int] = [
            _digest(reservation_id),
            round(self.retention_s * 1000),
            round(self.grace_s * 1000),
            "record",
            len(actual),
            *actual,
            *(self._ttl_ms(c) for c in charges),
        ]
        reply = await self._call(self._settle, keys, args)
        if reply[0] == -2:
            raise settle_error(reservation_id, int(reply[1]), len(actual))
        return bool(reply[0] == 1)

    async def _do_renew(self, reservation_id: str, lease_s: float) -> bool:
        args: list[str | int] = [
            _digest(reservation_id),
            max(1, round(lease_s * 1000)),
            round(self.retention_s * 1000),
        ]
        reply = await self._call(self._renew, [self._record_key(reservation_id)], args)
        return bool(reply[0] == 1)

    async def _do_state(self, key: str) -> CounterState:
        reply = await self._call(self._state, [self.counter_key(key), self._holds_key(key)], [])
        return CounterState(spent=int(reply[0]), reserved=int(reply[1]))

    async def _do_reset(self, key: str) -> None:
        keys = (self.counter_key(key), self._holds_key(key))
        await self._io(lambda client: client.delete(*keys))

    async def check(self) -> None:
        """Connect, authenticate, select the database and load the scripts.

        Raises:
            ConfigurationError: wrong password, not a Redis server, bad database index,
                or a server without scripting.
            StoreUnavailable: the server cannot be reached now.
        """

        async def check(client: Any) -> None:
            await client.ping()
            for script in (self._reserve, self._settle, self._state):
                await client.script_load(script.text)

        await self._io(check)

    async def close(self) -> None:
        """Close the connection pools (an injected client is left open).

        The pool of the calling loop is closed now, those of loops running in other
        threads on their loops, those of closed loops at once. The pool of an idle loop
        of another thread (a ``run_sync`` loop between runs) cannot be touched from here:
        it is closed when that loop shuts down, or when the store finds it closed. The
        store stays usable: a later call connects again.
        """
        current = asyncio.get_running_loop()
        with self._clients_lock:
            clients = list(self._clients.items())
            for loop, _ in clients:
                if loop is current or loop.is_closed() or loop.is_running():
                    del self._clients[loop]
        for loop, client in clients:
            if loop is current:
                await _close_client(client)
            elif loop.is_closed():
                _discard(client)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(_close_client(client), loop)

    def _ttl_ms(self, charge: Charge) -> int:
        if charge.ttl_s is None:
            return -1
        return round((charge.ttl_s + self.grace_s) * 1000)

    async def _call(self, script: _Script, keys: list[str], args: list[str | int]) -> list[Any]:
        async def call(client: Any) -> Any:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except self._exceptions.NoScriptError:
                await client.script_load(script.text)
                return await client.evalsha(script.sha, len(keys), *keys, *args)

        return list(await self._io(call))

    async def _io(self, operation: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run a client operation on this loop's client, translating backend errors."""
        try:
            client = self._injected
            if client is None:
                client = self._clients.get(asyncio.get_running_loop())
                if client is None:
                    client = await self._open_for_this_loop()
            return await operation(client)
        except Exception as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc

    def _new_client(self) -> Any:
        try:
            pool = self._aioredis.BlockingConnectionPool.from_url(
                self._raw_url, **self._pool_options
            )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"bad Redis URL {self.url!r}: {exc}") from None
        return self._aioredis.Redis(connection_pool=pool)

    async def _open_for_this_loop(self) -> Any:
        """A client for the running loop.

        It is closed when the loop shuts down its async generators (``asyncio.run``
        does at its end, ``Runner.run_sync`` after each run). A loop that already did so
        (a thread's ``run_sync`` loop, kept open by the SDK) keeps its client for later
        runs; once the loop is closed, its sockets are closed here.
        """
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            for old in [other for other in self._clients if other.is_closed()]:
                _discard(self._clients.pop(old))
                self._closers.pop(old, None)
            client = self._new_client()
            self._clients[loop] = client
        if not getattr(loop, "_asyncgens_shutdown_called", False):
            closer = self._closer(loop, client)
            await closer.__anext__()  # now suspended in its try; aclose() runs the finally
            self._closers[loop] = closer
        return client

    async def _closer(self, loop: asyncio.AbstractEventLoop, client: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            with self._clients_lock:
                if self._clients.get(loop) is client:
                    del self._clients[loop]
                if self._closers.get(loop) is not None:
                    self._closers.pop(loop, None)
            await _close_client(client)

    def _translate(self, exc: BaseException) -> StoreUnavailable | ConfigurationError | None:
        """The error to raise for a backend error, or None to re-raise it.

        Misconfiguration (authentication, a server that does not speak Redis, a bad
        database index, unknown commands) is a ``ConfigurationError`` in every fail
        mode; only transient failures are ``StoreUnavailable``.
        """
        message = self._scrub(str(exc) or type(exc).__name__)
        misconfigured = any(isinstance(e, self._misconfigured) for e in _chain(exc)) or (
            isinstance(exc, self._exceptions.ConnectionError) and "Invalid Database" in message
        )
        if not misconfigured:
            if isinstance(exc, self._unavailable):
                return StoreUnavailable(self._unavailable_message(message), url=self.url)
            if not isinstance(exc, self._exceptions.ResponseError):
                return None
            if message.startswith(_UNAVAILABLE_REPLIES):
                return StoreUnavailable(self._unavailable_message(message), url=self.url)
            if any(marker in message for marker in _SCRIPT_ERRORS):
                return None  # a bug in a script, not in the configuration
        return StoreConfigurationError(
            f"the Redis budget store at {self.url} is misconfigured ({_reason(exc)}): "
            f"{message}. Fix the URL or the server; this is not an outage, so it is "
            "raised whatever fail= says",
            url=self.url,
        )

    def _unavailable_message(self, message: str) -> str:
        return f"the Redis budget store at {self.url} is unavailable: {message}"

    def _scrub(self, message: str) -> str:
        if self._password:
            message = message.replace(self._password, "***")
        return message


async def _close_client(client: Any) -> None:
    """Close a client and its pool; a connection that cannot be closed cleanly (a
    timeout on a busy server) is dropped, not raised: nothing is lost by closing."""
    try:
        await client.aclose()
        await client.connection_pool.disconnect()
    except Exception as exc:
        logger.debug("closing a Redis budget store connection failed: %r", exc)
        with contextlib.suppress(Exception):  # redis-py internals: best effort
            for connection in _connections(client.connection_pool):
                writer = getattr(connection, "_writer", None)
                if writer is not None:
                    connection._writer = connection._reader = None
                    writer.transport.abort()  # the loop is running: close the socket now


def _discard(client: Any) -> None:
    """Close the sockets of a client whose event loop is closed (nothing can be awaited
    there), so they are neither leaked nor reported as unclosed when collected.

    Uses private attributes of redis-py and asyncio transports, defensively: at worst
    the sockets are left to the garbage collector."""
    try:
        _close_sockets(client.connection_pool)
    except Exception:  # pragma: no cover - a redis-py or asyncio internals change
        pass


def _connections(pool: Any) -> list[Any]:
    return [
        *getattr(pool, "_available_connections", ()),
        *getattr(pool, "_in_use_connections", ()),
    ]


def _close_sockets(pool: Any) -> None:
    for connection in _connections(pool):
        writer = getattr(connection, "_writer", None)
        if writer is None:
            continue
        connection._writer = connection._reader = None
        transport = writer.transport
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            sock.close()
            transport._sock = None
        transport._closing = True  # what close() would mark, had the loop been open


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if "Authentication" in name or "NoPermission" in name:
        return "authentication failed: check the user and password"
    if name == "InvalidResponse":
        return "the server does not speak the Redis protocol: is this the Redis port?"
    text = str(exc)
    if "DB index" in text or "Invalid Database" in text:
        return "the database index does not exist on this server"
    if "SSL" in name or "Certificate" in name:
        return "the TLS certificate was not accepted"
    return "the server refused the command"
