"""Fail open: admit and journal while the store is down, replay once it is back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.journal_support import C, Flaky, FlakyRecorder, live_entries
from helpers.stores_support import FakeClock, RedisServer

from agentbudget.errors import ConfigurationError, StoreUnavailable
from agentbudget.stores import (
    BudgetStore,
    Charge,
    CounterState,
    JournalingStore,
    MemoryStore,
    RedisStore,
    ReserveResult,
)


@pytest.fixture(params=[FlakyRecorder, Flaky], ids=["recorder", "protocol-only"])
def flaky(request: pytest.FixtureRequest) -> Flaky:
    flaky: Flaky = request.param(MemoryStore(clock=FakeClock()))
    return flaky


async def test_while_up_it_is_the_inner_store(flaky: Flaky, tmp_path: Path) -> None:
    store = JournalingStore(flaky, tmp_path / "j.jsonl")
    assert isinstance(store, BudgetStore)
    assert (await store.reserve(C, reservation_id="a", lease_s=30)).ok
    assert await flaky.inner.state("user") == CounterState(0, 40)
    refused = await store.reserve([Charge("user", 100, 70, 3600)], reservation_id="b", lease_s=30)
    assert (refused.ok, refused.available) == (False, 60)
    await store.settle("a", [30, 31])
    assert await store.state("global") == CounterState(31, 0)
    assert not (tmp_path / "j.jsonl").exists()


async def test_while_down_it_admits_and_journals_then_replays_every_unit(
    flaky: Flaky, tmp_path: Path
) -> None:
    path = tmp_path / "j.jsonl"
    store = JournalingStore(flaky, path)
    assert (await store.reserve(C, reservation_id="before", lease_s=30)).ok  # held inner
    flaky.down = True
    result = await store.reserve(C, reservation_id="local", lease_s=30)
    assert result == ReserveResult(ok=True, reservation_id="local")
    await store.settle("before", [10, 11])
    await store.settle("local", [200, 201])  # more than any limit: it was spent
    await store.release("forgotten-by-store")  # nothing to journal
    assert [e["reservation_id"] for e in live_entries(path)] == ["before", "local"]
    assert await store.pending_entries() == 2
    with pytest.raises(StoreUnavailable):
        await store.replay()
    assert await store.pending_entries() == 2

    flaky.down = False
    assert await flaky.inner.state("user") == CounterState(0, 40)  # nothing applied yet
    assert await store.replay() == 2
    assert await store.state("user") == CounterState(210, 0)  # the hold is settled too
    assert await store.state("global") == CounterState(212, 0)
    assert live_entries(path) == []
    assert await store.replay() == 0
    assert await store.state("user") == CounterState(210, 0)


async def test_a_settle_journaled_twice_counts_once(flaky: Flaky, tmp_path: Path) -> None:
    store = JournalingStore(flaky, tmp_path / "j.jsonl")
    flaky.down = True
    await store.reserve(C, reservation_id="r", lease_s=30)
    await store.settle("r", [5, 5])
    await store.settle("r", [5, 5])
    flaky.down = False
    await store.settle("r", [5, 5])  # still in the journal: not sent again
    await store.replay()
    assert await store.state("user") == CounterState(5, 0)


async def test_replaying_again_after_a_crash_does_not_double_count(
    flaky: Flaky, tmp_path: Path
) -> None:
    path = tmp_path / "j.jsonl"
    store = JournalingStore(flaky, path)
    flaky.down = True
    await store.reserve(C, reservation_id="r1", lease_s=30)
    await store.reserve(C, reservation_id="r2", lease_s=30)
    await store.settle("r1", [7, 7])
    await store.settle("r2", [8, 8])
    shutil.copy(path, tmp_path / "before-replay.jsonl")
    flaky.down = False
    await store.replay()
    # The process died after applying but before the journal was truncated:
    shutil.copy(tmp_path / "before-replay.jsonl", path)
    restarted = JournalingStore(flaky, path)
    assert await restarted.replay() == 2
    assert await restarted.state("user") == CounterState(15, 0)
    assert await restarted.pending_entries() == 0


async def test_reserve_replays_the_journal_first(flaky: Flaky, tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    store = JournalingStore(flaky, path)
    flaky.down = True
    await store.reserve(C, reservation_id="a", lease_s=30)
    await store.settle("a", [90, 90])
    flaky.down = False
    refused = await store.reserve([Charge("user", 100, 20, 3600)], reservation_id="b", lease_s=30)
    assert (refused.ok, refused.available) == (False, 10)  # the journaled 90 counted
    assert live_entries(path) == []


async def test_a_journal_left_by_a_dead_process_is_replayed_by_the_next(
    flaky: Flaky, tmp_path: Path
) -> None:
    path = tmp_path / "j.jsonl"
    first = JournalingStore(flaky, path)
    flaky.down = True
    await first.reserve(C, reservation_id="a", lease_s=30)
    await first.settle("a", [60, 60])
    flaky.down = False
    second = JournalingStore(flaky, path)
    refused = await second.reserve([Charge("user", 100, 50, 3600)], reservation_id="b", lease_s=30)
    assert (refused.ok, refused.available) == (False, 40)
    with pytest.raises(ConfigurationError, match="already used"):
        await second.reserve(C, reservation_id="a", lease_s=30)


async def test_an_id_the_store_never_knew_goes_to_the_rejected_file(
    flaky: Flaky, tmp_path: Path
) -> None:
    path = tmp_path / "j.jsonl"
    store = JournalingStore(flaky, path)
    flaky.down = True
    await store.settle("never-reserved-anywhere", [5])  # the store will not know it
    await store.reserve(C, reservation_id="ok", lease_s=30)
    await store.settle("ok", [3, 3])
    flaky.down = False
    assert await store.replay() == 1
    assert await store.state("user") == CounterState(3, 0)
    (rejected,) = (tmp_path / "j.jsonl.rejected").read_text().splitlines()
    assert json.loads(rejected)["reservation_id"] == "never-reserved-anywhere"
    assert "no reservation" in json.loads(rejected)["error"]
    assert live_entries(path) == []


async def test_a_release_while_down_is_not_journaled_and_the_lease_frees_it(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    flaky = FlakyRecorder(MemoryStore(clock=clock))
    store = JournalingStore(flaky, tmp_path / "j.jsonl")
    await store.reserve(C, reservation_id="r", lease_s=30)
    flaky.down = True
    await store.release("r")
    assert await store.pending_entries() == 0
    flaky.down = False
    clock.advance(31)
    assert await store.state("user") == CounterState(0, 0)


async def test_bad_arguments_are_still_configuration_errors(flaky: Flaky, tmp_path: Path) -> None:
    store = JournalingStore(flaky, tmp_path / "j.jsonl")
    flaky.down = True
    await store.reserve(C, reservation_id="r", lease_s=30)
    with pytest.raises(ConfigurationError):
        await store.settle("r", [1])
    with pytest.raises(ConfigurationError):
        await store.reserve([], reservation_id="s", lease_s=30)
    with pytest.raises(ConfigurationError):
        JournalingStore(flaky, tmp_path / "missing-dir" / "j.jsonl")


@pytest.mark.slow
async def test_redis_outage_spend_is_journaled_and_replayed_exactly(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "j.jsonl"
    inner = RedisStore(redis_server.url, connect_timeout_s=0.5, socket_timeout_s=0.5)
    store = JournalingStore(inner, path)
    try:
        assert (await store.reserve(C, reservation_id="held", lease_s=60)).ok
        redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await inner.state("user")  # the bare store fails closed
        for i in range(5):
            assert (await store.reserve(C, reservation_id=f"down{i}", lease_s=60)).ok
            await store.settle(f"down{i}", [10 + i, 20 + i])
        await store.settle("held", [7, 8])
        assert len(live_entries(path)) == 6
        with pytest.raises(StoreUnavailable):
            await store.replay()

        redis_server.start()  # same port, empty: no persistence
        backup = path.read_text()
        refused = await store.reserve([Charge("user", 10, 1, 3600)], reservation_id="x", lease_s=5)
        assert not refused.ok  # replayed first: the outage spend counts
        spent_user = sum(10 + i for i in range(5)) + 7
        spent_global = sum(20 + i for i in range(5)) + 8
        assert await store.state("user") == CounterState(spent_user, 0)
        assert await store.state("global") == CounterState(spent_global, 0)
        assert live_entries(path) == []

        path.write_text(backup)  # crash before truncation: replay again
        assert await JournalingStore(inner, path).replay() == 6
        assert await store.state("user") == CounterState(spent_user, 0)
        assert await store.state("global") == CounterState(spent_global, 0)
    finally:
        await store.close()
