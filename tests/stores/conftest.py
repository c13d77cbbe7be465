"""Fixtures for the store tests: every store by URL, fake clocks, Redis servers.

Redis tests need the server at 127.0.0.1:6379, db 15 (or $AGENTBUDGET_TEST_REDIS_URL).
When it is unreachable they are skipped, except under ``CI=true`` where they fail: CI
must not go green without having run them. The same holds for ``redis-server`` on PATH
(throwaway servers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers.faults import private_redis_server
from helpers.stores_support import (
    STORE_KINDS,
    TIMED_STORE_KINDS,
    Env,
    RedisServer,
    free_port,
    require_redis_server_binary,
    store_env,
)


@pytest.fixture(params=STORE_KINDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Every store kind; build stores with ``env.make(**options)``."""
    async for value in store_env(request.param, tmp_path):
        yield value


@pytest.fixture(params=TIMED_STORE_KINDS)
async def timed_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Like ``env``, for tests that move time (Redis ones are marked slow)."""
    async for value in store_env(request.param, tmp_path):
        yield value


@pytest.fixture
async def redis_env(tmp_path: Path) -> AsyncIterator[Env]:
    """The Redis store only."""
    async for value in store_env("redis", tmp_path):
        yield value


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started throwaway Redis server on a free port (stopped at the end)."""
    server = RedisServer(require_redis_server_binary(), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def private_redis() -> Iterator[RedisServer]:
    """One private ``redis-server`` per test session, for tests that pause or slow it."""
    with private_redis_server() as server:
        yield server
