"""Budgets tests run against every store (the store helpers live in tests/helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers.faults import private_redis_server
from helpers.stores_support import STORE_KINDS, Env, RedisServer, store_env


@pytest.fixture(params=STORE_KINDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Every store kind (Redis: skipped when unreachable, failing under CI=true)."""
    async for environment in store_env(request.param, tmp_path):
        yield environment


@pytest.fixture(scope="session")
def private_redis() -> Iterator[RedisServer]:
    """One private ``redis-server`` per test session, for tests that pause or slow it."""
    with private_redis_server() as server:
        yield server
