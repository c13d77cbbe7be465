"""The Redis store from several event loops: one pool per loop, closed with its loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis
from helpers.stores_support import RedisServer

from agentbudget.stores import Charge, CounterState, RedisStore


def _our_connections(server: RedisServer) -> int:
    admin = redis.Redis(port=server.port)
    try:
        return len(admin.client_list()) - 1  # all but the admin's own
    finally:
        admin.close()


@pytest.mark.slow
def test_sequential_asyncio_runs_and_threads_share_one_store(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)

    async def reserve_and_settle(rid: str) -> None:
        assert (await store.reserve([Charge("k", 100, 5)], reservation_id=rid, lease_s=60)).ok
        await store.settle(rid, [5])

    for i in range(3):  # a closed loop's connections must not be reused
        asyncio.run(reserve_and_settle(f"seq{i}"))
    assert _our_connections(redis_server) == 0  # each loop's pool closed with the loop

    errors: list[BaseException] = []

    def in_thread(n: int) -> None:
        try:
            for j in range(3):
                asyncio.run(reserve_and_settle(f"t{n}-{j}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []

    async def final() -> CounterState:
        try:
            return await store.state("k")
        finally:
            await store.close()

    assert asyncio.run(final()) == CounterState(5 * (3 + 12), 0)
    assert _our_connections(redis_server) == 0
    assert store._clients == {}


@pytest.mark.slow
def test_a_loop_closed_without_shutdown_has_its_sockets_closed(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(store.state("k"))  # no shutdown_asyncgens: the pool stays open
    loop.close()
    assert _our_connections(redis_server) == 1

    async def later() -> None:
        await store.state("k")  # finds the closed loop and closes its sockets
        await store.close()

    asyncio.run(later())
    assert _our_connections(redis_server) == 0
