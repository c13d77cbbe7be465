"""Misconfiguration is not an outage: wrong password, wrong service, bad database, bad URL.

Each raises ``ConfigurationError`` naming the URL (password masked); only transient
failures are ``StoreUnavailable``. Servers here are private ``redis-server`` processes on
free ports, never the shared one.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.stores_support import PASSWORD, PrivateRedis, free_port
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from agentbudget.errors import ConfigurationError, StoreUnavailable
from agentbudget.stores import (
    Charge,
    JournalingStore,
    RedisStore,
    StoreConfigurationError,
    store_from_url,
)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def not_redis() -> Iterator[str]:
    """A TCP service that answers like an HTTP server, behind a ``redis://`` URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


C = [Charge("user", 100, 10, 3600)]


async def _every_operation_raises_configuration_error(store: RedisStore) -> list[str]:
    messages = []
    operations = [
        lambda: store.reserve(C, reservation_id="r", lease_s=30),
        lambda: store.settle("r", [1]),
        lambda: store.release("r"),
        lambda: store.state("user"),
        lambda: store.reset("user"),
        lambda: store.check(),
    ]
    for operation in operations:
        with pytest.raises(ConfigurationError) as caught:
            await operation()
        assert not isinstance(caught.value, StoreUnavailable)
        assert isinstance(caught.value, StoreConfigurationError)
        assert caught.value.url == store.url
        messages.append(str(caught.value))
    return messages


@pytest.mark.slow
@pytest.mark.parametrize("password", ["wrong-pw", None], ids=["wrong", "missing"])
async def test_a_wrong_or_missing_password_is_a_configuration_error(
    private_redis: PrivateRedis, password: str | None
) -> None:
    store = RedisStore(private_redis.url(password), connect_timeout_s=1, socket_timeout_s=1)
    try:
        messages = await _every_operation_raises_configuration_error(store)
    finally:
        await store.close()
    for message in messages:
        assert "authentication failed" in message
        assert f"127.0.0.1:{private_redis.port}" in message
        assert "wrong-pw" not in message and PASSWORD not in message
    if password is not None:
        assert ":***@" in messages[0]


@pytest.mark.slow
async def test_the_right_password_works_and_check_passes(private_redis: PrivateRedis) -> None:
    store = RedisStore(private_redis.url())
    try:
        await store.check()
        assert (await store.reserve(C, reservation_id="ok", lease_s=30)).ok
        assert (await store.state("user")).reserved == 10
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_database_index_the_server_lacks_is_a_configuration_error(
    private_redis: PrivateRedis,
) -> None:
    store = RedisStore(private_redis.url(db="99"))
    try:
        messages = await _every_operation_raises_configuration_error(store)
    finally:
        await store.close()
    assert "database index" in messages[0]


async def test_a_service_that_is_not_redis_is_a_configuration_error(not_redis: str) -> None:
    store = RedisStore(not_redis, connect_timeout_s=1, socket_timeout_s=1)
    try:
        messages = await _every_operation_raises_configuration_error(store)
    finally:
        await store.close()
    assert "does not speak the Redis protocol" in messages[0]


async def test_connection_refused_is_still_store_unavailable() -> None:
    store = RedisStore(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", connect_timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await store.check()
        with pytest.raises(StoreUnavailable):
            await store.reserve(C, reservation_id="r", lease_s=30)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/abc",
        "redis://127.0.0.1:6379/0?db=x",
        "redis://127.0.0.1:port/0",
        "redis:///0",
        "redis://127.0.0.1:6379/-1",
    ],
)
def test_bad_urls_are_refused_at_construction(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"(?i)Redis( store)? URL"):
        RedisStore(url)
    with pytest.raises(ConfigurationError):
        store_from_url(url)


def test_a_bad_url_error_masks_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisStore(f"redis://user:{PASSWORD}@127.0.0.1:6379/abc")
    assert PASSWORD not in str(caught.value) and "user:***@" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("Connection reset by peer"),
        TimeoutError("Timeout reading from socket"),
        BusyLoadingError("Redis is loading the dataset in memory"),
        ResponseError("LOADING Redis is loading the dataset in memory"),
        ResponseError("BUSY Redis is busy running a script"),
        ResponseError("MASTERDOWN Link with MASTER is down"),
        ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
        ReadOnlyError("You can't write against a read only replica."),
        ConnectionResetError(),
    ],
    ids=repr,
)
def test_transient_failures_are_store_unavailable(error: Exception) -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    assert isinstance(store._translate(error), StoreUnavailable)


@pytest.mark.parametrize(
    "error",
    [
        ResponseError("ERR DB index is out of range"),
        ResponseError("ERR unknown command 'EVALSHA'"),
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ConnectionError("Invalid Database"),
    ],
    ids=repr,
)
def test_misconfiguration_replies_are_configuration_errors(error: Exception) -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    assert isinstance(store._translate(error), StoreConfigurationError)


@pytest.mark.slow
async def test_fail_open_does_not_admit_on_a_wrong_password_nor_drop_the_journal(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    path = tmp_path / "j.jsonl"
    good = JournalingStore(RedisStore(f"redis://127.0.0.1:{free_port()}/0"), path)
    await good.reserve(C, reservation_id="down", lease_s=30)  # admitted locally
    await good.settle("down", [7])  # journaled
    await good.close()
    assert await good.pending_entries() == 1

    store = JournalingStore(RedisStore(private_redis.url("wrong-pw")), path)
    try:
        with pytest.raises(ConfigurationError, match="authentication failed"):
            await store.reserve(C, reservation_id="r", lease_s=30)
        with pytest.raises(ConfigurationError, match="authentication failed"):
            await store.replay()
        assert await store.pending_entries() == 1  # kept for a correctly configured store
        assert not (tmp_path / "j.jsonl.rejected").exists()
    finally:
        await store.close()
    fixed = JournalingStore(RedisStore(private_redis.url()), path)
    try:
        assert await fixed.replay() == 1
        assert (await fixed.state("user")).spent == 7
    finally:
        await fixed.close()
