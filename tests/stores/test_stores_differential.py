"""Random operation sequences give the same answers on the memory and SQLite stores."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers.stores_support import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from agentbudget.errors import ConfigurationError
from agentbudget.stores import BaseStore, Charge, MemoryStore, SQLiteStore

KEYS = ["user", "team", "global"]

charges = st.lists(
    st.builds(
        Charge,
        key=st.sampled_from(KEYS),
        limit=st.integers(0, 100),
        amount=st.integers(0, 60),
        ttl_s=st.sampled_from([None, 5, 40]),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda c: c.key,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), charges, st.integers(0, 5), st.sampled_from([1, 10])),
        st.tuples(
            st.just("settle"),
            st.integers(0, 6),
            st.lists(st.integers(0, 80), min_size=3, max_size=3),
            st.booleans(),
        ),
        st.tuples(st.just("release"), st.integers(0, 6)),
        st.tuples(st.just("record"), st.integers(0, 6), charges),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 3, 12, 60])),
        st.tuples(st.just("reset"), st.sampled_from(KEYS)),
    ),
    max_size=30,
)


async def _step(store: BaseStore, op: tuple[Any, ...], sizes: dict[int, int]) -> Any:
    try:
        if op[0] == "reserve":
            return await store.reserve(op[1], reservation_id=f"r{op[2]}", lease_s=op[3])
        if op[0] == "settle":  # mostly with as many amounts as the reservation had charges
            amounts = op[2] if op[3] else op[2][: sizes.get(op[1], 1)]
            return await store.settle(f"r{op[1]}", amounts)
        if op[0] == "release":
            return await store.release(f"r{op[1]}")
        if op[0] == "record":
            return await store.record(f"r{op[1]}", op[2], [c.amount for c in op[2]])
        if op[0] == "reset":
            return await store.reset(op[1])
    except ConfigurationError as exc:
        return type(exc).__name__
    return None


async def _run(ops: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    sizes: dict[int, int] = {}
    memory = MemoryStore(clock=clock, grace_s=10, retention_s=30)
    sqlite = SQLiteStore("sqlite:///:memory:", clock=clock, grace_s=10, retention_s=30)
    try:
        for op in ops:
            if op[0] == "advance":
                clock.advance(op[1])
                continue
            if op[0] == "reserve":
                sizes[op[2]] = len(op[1])
            assert await _step(memory, op, sizes) == await _step(sqlite, op, sizes), op
            for key in KEYS:
                assert await memory.state(key) == await sqlite.state(key), (op, key)
    finally:
        await sqlite.close()


@settings(max_examples=300, deadline=None, database=None)
@given(operations)
def test_memory_and_sqlite_agree_on_any_sequence(ops: list[tuple[Any, ...]]) -> None:
    asyncio.run(_run(ops))
