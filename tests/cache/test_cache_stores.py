"""Cache stores by URL: memory (TTL, LRU), SQLite (shared file), Redis (JSON, SET EX)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents import Agent
from helpers.cache_support import REDIS_URL

import agentbudget as ab
from agentbudget.cache import (
    MemoryCacheStore,
    RedisCacheStore,
    SQLiteCacheStore,
    cache_store_from_url,
    register_cache_store,
)
from agentbudget.testing import reply, scripted_model

QUESTION = "What is the capital of France?"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def answering(*texts: str) -> Any:
    return scripted_model(
        "gpt-4o", [reply(t, input_tokens=1_000, output_tokens=100) for t in texts]
    )


def test_urls_pick_the_store_class(tmp_path: Path) -> None:
    assert isinstance(cache_store_from_url("memory://"), MemoryCacheStore)
    assert isinstance(cache_store_from_url(f"sqlite:///{tmp_path}/c.db"), SQLiteCacheStore)
    assert isinstance(cache_store_from_url("redis://127.0.0.1:6379/15"), RedisCacheStore)
    with pytest.raises(ab.ConfigurationError, match="does not take"):
        cache_store_from_url("memory://", prefix="x")


def test_a_registered_scheme_is_used_by_url() -> None:
    made: list[str] = []

    def factory(url: str) -> MemoryCacheStore:
        made.append(url)
        return MemoryCacheStore()

    register_cache_store("mine", factory)
    cache = ab.ResponseCache("mine://here")
    assert made == ["mine://here"] and isinstance(cache.store, MemoryCacheStore)
    with pytest.raises(ab.ConfigurationError, match="scheme"):
        register_cache_store("1bad", factory)


def test_memory_entries_expire_after_their_ttl_and_the_least_recently_used_go_first() -> None:
    clock = Clock()
    store = MemoryCacheStore(maxsize=2, clock=clock)
    store.set("a", "1", 10)
    clock.now += 9.9
    assert store.get("a") == "1"
    clock.now += 0.2
    assert store.get("a") is None
    store.set("a", "1", 100)
    store.set("b", "2", 100)
    assert store.get("a") == "1"  # "b" is now the least recently used
    store.set("c", "3", 100)
    assert (store.get("a"), store.get("b"), store.get("c")) == ("1", None, "3")
    assert len(store) == 2


async def test_a_cached_answer_expires_after_the_cache_ttl() -> None:
    clock = Clock()
    cache = ab.ResponseCache(MemoryCacheStore(clock=clock), ttl=60)
    model = answering("old", "new")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=cache)
    await guard.run(agent, QUESTION, user="u")
    clock.now += 59
    assert (await guard.run(agent, QUESTION, user="u")).final_output == "old"
    clock.now += 2
    assert (await guard.run(agent, QUESTION, user="u")).final_output == "new"


def test_sqlite_stores_on_one_file_share_entries_until_they_expire(tmp_path: Path) -> None:
    clock = Clock()
    url = f"sqlite:///{tmp_path}/cache.db"
    one, two = SQLiteCacheStore(url, clock=clock), SQLiteCacheStore(url, clock=clock)
    one.set("k", '{"x": 1}', 30)
    assert two.get("k") == '{"x": 1}'
    clock.now += 31
    assert two.get("k") is None
    one.close()
    two.close()


async def test_a_sqlite_cache_answers_from_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cache.db"
    first = ab.ResponseCache(url)
    model = answering("Paris.")
    agent = Agent(name="geo", model=model)
    paid = await ab.Guard(cache=first).run(agent, QUESTION, user="u")
    first.close()  # pending writes land
    second = ab.ResponseCache(url)  # another cache (another process would do the same)
    hit = await ab.Guard(cache=second).run(agent, QUESTION, user="u")
    second.close()
    assert len(model.calls) == 1 and hit.final_output == "Paris."
    assert ab.report_of(hit).saved_usd == ab.report_of(paid).cost_usd


@pytest.mark.redis
def test_redis_values_are_json_with_an_expiry_and_oversized_values_are_not_stored(
    redis_prefix: str,
) -> None:
    import redis

    store = RedisCacheStore(REDIS_URL, prefix=redis_prefix, max_value_bytes=64)
    store.set("k", '{"answer": "Paris"}', 30.5)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        raw = client.get(f"{redis_prefix}k")
        assert raw is not None and json.loads(raw) == {"answer": "Paris"}
        assert 0 < client.ttl(f"{redis_prefix}k") <= 31
        store.set("big", json.dumps("x" * 100), 30)
        assert client.exists(f"{redis_prefix}big") == 0
    finally:
        client.close()
    assert store.get("k") == '{"answer": "Paris"}' and store.get("missing") is None
    store.delete("k")
    assert store.get("k") is None
    store.close()


@pytest.mark.redis
@pytest.mark.slow
async def test_a_redis_cache_shared_by_two_processes_serves_the_second(
    redis_prefix: str,
) -> None:
    worker = Path(__file__).with_name("cache_worker.py")
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(worker), REDIS_URL, redis_prefix, QUESTION],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    hit, paid, model_calls = out.stdout.split()
    assert (hit, model_calls) == ("False", "1")

    cache = ab.ResponseCache(RedisCacheStore(REDIS_URL, prefix=redis_prefix))
    never = scripted_model("gpt-4o", [])  # raises if it is called
    result = await ab.Guard(cache=cache).run(Agent(name="geo", model=never), QUESTION, user="u-1")
    report = ab.report_of(result)
    assert result.final_output == "Paris." and never.calls == ()
    assert report.cache_hit and report.saved_usd == Decimal(paid) > 0
    fresh = scripted_model("gpt-4o", [reply("Paris!")])
    other = await ab.Guard(cache=cache).run(Agent(name="geo", model=fresh), QUESTION, user="u-2")
    assert other.final_output == "Paris!" and len(fresh.calls) == 1
    cache.close()


async def test_an_unreachable_store_runs_the_agent_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = ab.ResponseCache(RedisCacheStore(f"redis://127.0.0.1:{port}/0", socket_timeout_s=0.5))
    model = answering("a", "b")
    agent = Agent(name="geo", model=model)
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        for _ in range(2):
            await ab.Guard(cache=cache).run(agent, QUESTION, user="u")
        cache.flush()
    assert len(model.calls) == 2
    assert "cache read failed" in caplog.text and "cache write failed" in caplog.text
    cache.close()
