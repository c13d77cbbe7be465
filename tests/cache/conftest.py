"""Fixtures for the response cache tests: a Redis prefix of the test's own (never a flush)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from helpers.cache_support import REDIS_URL


def _redis_or_skip() -> None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc!r}")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared test Redis; its keys are deleted after."""
    import redis

    _redis_or_skip()
    prefix = f"ab-test-cache-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
