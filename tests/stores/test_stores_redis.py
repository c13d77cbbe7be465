"""Redis specifics: one round trip, hash tags, script reloads, fail-closed errors."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import redis.asyncio as aioredis
from helpers.stores_support import Env, RedisServer, free_port
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ResponseError

from agentbudget.errors import ConfigurationError, StoreUnavailable
from agentbudget.stores import Charge, CounterState, RedisStore, store_from_url


def _command_names(packed: Any) -> list[bytes]:
    """The names of the commands in one packed RESP write."""
    chunks = packed if isinstance(packed, (list, tuple)) else [packed]
    data = b"".join(bytes(chunk) for chunk in chunks)
    tokens = data.split(b"\r\n")
    return [tokens[i + 2].upper() for i, t in enumerate(tokens) if t.startswith(b"*")]


class Wire:
    """Records every write the Redis client sends (one write = one round trip)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[list[bytes]] = []
        original = AbstractConnection.send_packed_command

        async def send(conn: AbstractConnection, command: Any, check_health: bool = True) -> None:
            self.writes.append(_command_names(command))
            await original(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", send)

    def take(self) -> list[list[bytes]]:
        writes, self.writes = self.writes, []
        return writes


@pytest.mark.redis
async def test_reserve_settle_release_and_state_are_one_round_trip_each(
    redis_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = redis_env.make()
    await store.state("warm-up")  # connects and loads the scripts
    wire = Wire(monkeypatch)
    charges = [Charge("user", 100, 10, 3600), Charge("team", 500, 10, 3600), Charge("g", 900, 10)]
    assert (await store.reserve(charges, reservation_id="a", lease_s=30)).ok
    assert wire.take() == [[b"EVALSHA"]]
    await store.settle("a", [5, 5, 5])
    assert wire.take() == [[b"EVALSHA"]]
    assert (await store.reserve(charges, reservation_id="b", lease_s=30)).ok
    wire.take()
    await store.release("b")
    assert wire.take() == [[b"EVALSHA"]]
    assert await store.state("user") == CounterState(5, 0)
    assert wire.take() == [[b"EVALSHA"]]
    refused = await store.reserve([Charge("user", 1, 10)], reservation_id="c", lease_s=30)
    assert not refused.ok
    assert wire.take() == [[b"EVALSHA"]]


@pytest.mark.slow
async def test_scripts_are_loaded_once_and_reloaded_after_a_flush(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_server.url)
    try:
        await store.state("warm-up")  # connection handshake
        wire = Wire(monkeypatch)
        await store.reserve([Charge("k", 10, 1)], reservation_id="a", lease_s=30)
        assert wire.take() == [[b"EVALSHA"], [b"SCRIPT"], [b"EVALSHA"]]  # NOSCRIPT, load
        await store.reserve([Charge("k", 10, 1)], reservation_id="b", lease_s=30)
        assert wire.take() == [[b"EVALSHA"]]
        admin = aioredis.Redis.from_url(redis_server.url)
        await admin.script_flush()
        await admin.aclose()
        wire.take()
        await store.settle("a", [1])
        assert wire.take() == [[b"EVALSHA"], [b"SCRIPT"], [b"EVALSHA"]]
        assert await store.state("k") == CounterState(1, 1)
    finally:
        await store.close()


@pytest.mark.redis
async def test_every_key_of_a_store_shares_one_cluster_hash_slot(redis_env: Env) -> None:
    store = redis_env.make()
    charges = [Charge("user:1", 100, 10, 3600), Charge("team:{x}", 100, 10, 3600)]
    await store.reserve(charges, reservation_id="r", lease_s=30)
    client = aioredis.Redis.from_url(redis_env.url)
    try:
        keys = [k async for k in client.scan_iter(match=f"ab:{{{redis_env.prefix}}}:*")]
    finally:
        await client.aclose()
    assert len(keys) == 5  # the record, and a hash and a holds zset per counter
    assert {key_slot(k) for k in keys} == {key_slot(f"{{{redis_env.prefix}}}".encode())}
    assert all(k.count(b"{") == 1 and k.count(b"}") == 1 for k in keys)


@pytest.mark.redis
async def test_prefixes_are_separate_namespaces(redis_env: Env) -> None:
    first = redis_env.make()
    other = redis_env.make(prefix=redis_env.prefix + "-other")
    try:
        await first.reserve([Charge("u", 100, 10)], reservation_id="r", lease_s=30)
        assert await other.state("u") == CounterState(0, 0)
        assert (await other.reserve([Charge("u", 100, 100)], reservation_id="r", lease_s=30)).ok
    finally:
        await other.reset("u")
        await other.release("r")
        client = aioredis.Redis.from_url(redis_env.url)
        keys = [k async for k in client.scan_iter(match=f"ab:{{{redis_env.prefix}-other}}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.redis
async def test_keys_expire_with_the_window_and_records_with_retention(redis_env: Env) -> None:
    store = redis_env.make(grace_s=100, retention_s=1000)
    assert isinstance(store, RedisStore)
    await store.reserve([Charge("day", 100, 10, 50)], reservation_id="r", lease_s=20)
    client = aioredis.Redis.from_url(redis_env.url)
    try:
        counter = store.counter_key("day")
        assert 149_000 < await client.pttl(counter) <= 150_000
        assert 149_000 < await client.pttl(counter.replace(":c:", ":h:")) <= 150_000
        records = [k async for k in client.scan_iter(match=f"ab:{{{redis_env.prefix}}}:r:*")]
        assert 1_019_000 < await client.pttl(records[0]) <= 1_020_000
        await store.settle("r", [10])
        assert 999_000 < await client.pttl(records[0]) <= 1_000_000
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_a_stopped_server_raises_store_unavailable(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, connect_timeout_s=0.5, socket_timeout_s=0.5)
    try:
        assert (await store.reserve([Charge("u", 100, 10)], reservation_id="a", lease_s=30)).ok
        redis_server.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await store.reserve([Charge("u", 100, 10)], reservation_id="b", lease_s=30)
        assert caught.value.url == store.url
        assert caught.value.__cause__ is not None
        for operation in (store.settle("a", [10]), store.state("u"), store.reset("u")):
            with pytest.raises(StoreUnavailable):
                await operation
    finally:
        await store.close()


async def test_an_unreachable_url_fails_fast_and_hides_the_password() -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    store = store_from_url(url, connect_timeout_s=0.5)
    try:
        assert "s3cret" not in store.url and "***" in store.url
        with pytest.raises(StoreUnavailable) as caught:
            await store.reserve([Charge("u", 100, 10)], reservation_id="a", lease_s=30)
        assert "s3cret" not in str(caught.value)
        assert caught.value.url == store.url
    finally:
        await store.close()


def test_busy_server_replies_are_unavailable_but_script_errors_are_not() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    assert isinstance(store._translate(ResponseError("OOM command not allowed")), StoreUnavailable)
    assert isinstance(store._translate(ConnectionRefusedError()), StoreUnavailable)
    assert store._translate(ResponseError("ERR user_script:1: bad")) is None


@pytest.mark.redis
async def test_an_injected_client_is_used_and_left_open(redis_env: Env) -> None:
    client = aioredis.Redis.from_url(redis_env.url)
    store = redis_env.make(client=client)
    await store.reserve([Charge("u", 100, 10)], reservation_id="r", lease_s=30)
    await store.close()
    assert await client.exists(store.counter_key("u")) == 1  # type: ignore[attr-defined]
    await client.aclose()


@pytest.mark.parametrize(
    "options",
    [
        {"prefix": ""},
        {"prefix": "a{b"},
        {"prefix": "a}b"},
        {"max_connections": 0},
        {"connect_timeout_s": 0},
        {"socket_timeout_s": -1},
    ],
    ids=repr,
)
def test_bad_redis_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore("redis://127.0.0.1:6379/15", **options)


def test_a_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError, match=r'pip install "agentbudget-sdk\[redis\]"'):
        store_from_url("redis://127.0.0.1:6379/0")
