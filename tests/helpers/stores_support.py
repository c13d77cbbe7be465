"""Helpers for the store tests: fake clocks, store environments, Redis servers.

Redis tests need the server at 127.0.0.1:6379, db 15 (or $AGENTBUDGET_TEST_REDIS_URL).
When it is unreachable they are skipped, except under ``CI=true`` where they fail: CI
must not go green without having run them. The same holds for ``redis-server`` on PATH
(throwaway servers).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentbudget.stores import BaseStore, store_from_url

# The shared test server; AGENTBUDGET_TEST_REDIS_URL points the tests elsewhere.
REDIS_URL = os.environ.get("AGENTBUDGET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
START = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: Redis tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


_redis_error: list[str | None] = []


def require_redis() -> None:
    """Skip (or, under CI=true, fail) when the Redis server at 6379 is unreachable."""
    if not _redis_error:
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
            try:
                client.ping()
            finally:
                client.close()
            _redis_error.append(None)
        except Exception as exc:  # ImportError, ConnectionError, ...
            _redis_error.append(f"Redis at {REDIS_URL} is unreachable: {exc!r}")
    if _redis_error[0] is not None:
        _unavailable(_redis_error[0])


def require_redis_server_binary() -> str:
    """The path of ``redis-server``, or skip (fail under CI=true)."""
    path = shutil.which("redis-server")
    if path is None:
        _unavailable("redis-server is not on PATH")
    assert path is not None
    return path


async def delete_prefix(prefix: str) -> None:
    """Delete every key of a store namespace from the shared test database."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"ab:{{{prefix}}}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass
class Env:
    """One kind of store, with a way to build more of it and to move its time."""

    kind: str
    tmp_path: Path
    clock: FakeClock = field(default_factory=FakeClock)
    prefix: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex}")
    stores: list[BaseStore] = field(default_factory=list)

    @property
    def url(self) -> str:
        return {
            "memory": "memory://",
            "sqlite": f"sqlite:///{self.tmp_path}/b.db",
            "redis": REDIS_URL,
        }[self.kind]

    @property
    def real_time(self) -> bool:
        return self.kind == "redis"

    def make(self, **options: Any) -> BaseStore:
        """A store of this kind sharing the same data (same file, same Redis prefix)."""
        if self.kind == "redis":
            options.setdefault("prefix", self.prefix)
        else:
            options.setdefault("clock", self.clock)
        store = store_from_url(self.url, **options)
        self.stores.append(store)
        return store

    async def advance(self, seconds: float) -> None:
        """Move time on: the fake clock, or real time for Redis (which uses its TIME)."""
        if self.real_time:
            await asyncio.sleep(seconds)
        else:
            self.clock.advance(seconds)


async def store_env(kind: str, tmp_path: Path) -> AsyncIterator[Env]:
    """An ``Env`` of one store kind, its stores closed (and Redis keys deleted) afterwards;
    Redis is skipped when unreachable, failing under CI=true."""
    if kind == "redis":
        require_redis()
    env = Env(kind, tmp_path)
    try:
        yield env
    finally:
        for store in env.stores:
            await store.close()
        if kind == "redis":
            await delete_prefix(env.prefix)


STORE_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
# For tests that wait for leases or windows: Redis waits in real time.
TIMED_STORE_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=[pytest.mark.redis, pytest.mark.slow]),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway ``redis-server`` without persistence, started and stopped by a test."""

    def __init__(self, binary: str, port: int, *options: str) -> None:
        self.binary = binary
        self.port = port
        self.options = options  # more redis-server options, e.g. "--requirepass", "pw"
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


PASSWORD = "s3cret-pw"


class PrivateRedis:
    """A throwaway ``redis-server`` with ``--requirepass PASSWORD`` on a free port."""

    def __init__(self) -> None:
        self.server = RedisServer(
            require_redis_server_binary(), free_port(), "--requirepass", PASSWORD
        )
        self.server.start()
        self.port = self.server.port

    def url(self, password: str | None = PASSWORD, db: str = "0") -> str:
        auth = "" if password is None else f":{password}@"
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.server.stop()
