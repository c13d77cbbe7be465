"""``redis://`` and ``rediss://``: counters in Redis, shared by many processes and machines."""

from __future__ import annotations

import asyncio
import hashlib
import math
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
    WindowMismatch,
    check_id,
    check_seconds,
    settle_error,
)

__all__ = ["RedisStore"]

# Response errors that mean "the server cannot serve now", not "the script is wrong".
_UNAVAILABLE_REPLIES = ("OOM", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def redact(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


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
        scheme = url.partition("://")[0]
        if scheme not in ("redis", "rediss") or "://" not in url:
            raise ConfigurationError(f"a Redis store URL is 'redis://host:port/db', got {url!r}")
        super().__init__(redact(url))
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
            asyncio.TimeoutError,
            OSError,
        )
        self._pool: Any = None
        if client is None:
            # No automatic retries: a reserve whose reply was lost must not run twice.
            self._pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=check_seconds("connect_timeout_s", connect_timeout_s)
                + check_seconds("socket_timeout_s", socket_timeout_s),
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=socket_timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            client = aioredis.Redis(connection_pool=self._pool)
        self._client: Any = client
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
        try:
            await self._client.delete(self.counter_key(key), self._holds_key(key))
        except Exception as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc

    async def close(self) -> None:
        """Close the connection pool (an injected client is left open)."""
        if self._pool is not None:
            await self._client.aclose()
            await self._pool.disconnect()

    def _ttl_ms(self, charge: Charge) -> int:
        if charge.ttl_s is None:
            return -1
        return round((charge.ttl_s + self.grace_s) * 1000)

    async def _call(self, script: _Script, keys: list[str], args: list[str | int]) -> list[Any]:
        try:
            try:
                reply = await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except self._exceptions.NoScriptError:
                await self._client.script_load(script.text)
                reply = await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except Exception as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc
        return list(reply)

    def _translate(self, exc: Exception) -> StoreUnavailable | None:
        """The ``StoreUnavailable`` to raise for a backend error, or None to re-raise it."""
        unavailable = isinstance(exc, self._unavailable) or isinstance(
            exc, self._exceptions.ReadOnlyError
        )
        if isinstance(exc, self._exceptions.ResponseError):
            unavailable = unavailable or str(exc).startswith(_UNAVAILABLE_REPLIES)
        if not unavailable:
            return None
        return StoreUnavailable(
            f"the Redis budget store at {self.url} is unavailable: {exc}", url=self.url
        )
