"""Budgets under time and failure: leases renewed while a call lives, settles kept until
they land, cancelled reserves released. Every store; private Redis servers for faults."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, ModelSettings
from agents.testing import ModelStep
from helpers.billing import billed
from helpers.faults import SlowProxy, pause_writes
from helpers.stores_support import Env, RedisServer

import agentbudget as ab
from agentbudget.errors import StoreUnavailable
from agentbudget.stores import CounterState, MemoryStore, RedisStore, SQLiteStore
from agentbudget.testing import scripted_model
from agentbudget.tokens import estimate_call_input

QUESTION = "What is the refund policy?"
PER_RUN = estimate_call_input("gpt-4o", None, [{"role": "user", "content": QUESTION}]).tokens + 100


async def take(seconds: float) -> None:
    """Spend ``seconds`` of real time in awaits of at most half a second."""
    steps = math.ceil(seconds / 0.5)
    for _ in range(steps):
        await asyncio.sleep(seconds / steps)


def slow_agent(seconds: float, during: Callable[[], Any] | None = None) -> Agent[Any]:
    """An agent whose one call takes ``seconds`` and uses its whole output bound."""
    respond = billed("gpt-4o", output_tokens=100)

    async def call(model_call: Any) -> Any:
        if during is not None:
            during()
        await take(seconds)
        return respond(model_call)

    return Agent(
        name="slow",
        model=scripted_model("gpt-4o", [ModelStep.respond(call)]),
        model_settings=ModelSettings(max_tokens=100),
    )


def real_time_store(env: Env, **options: Any) -> Any:
    """A store of ``env``'s kind on the real clock (leases are renewed in real time)."""
    if env.kind != "redis":
        options.setdefault("clock", time.time)
    return env.make(**options)


# -- leases ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lease_s", "call_s"),
    [(0.6, 1.5), pytest.param(1.0, 2.5, marks=pytest.mark.slow, id="lease1-call2.5")],
)
async def test_calls_that_outlive_the_lease_never_admit_past_the_allowance(
    env: Env, lease_s: float, call_s: float
) -> None:
    b = ab.Budgets(
        store=real_time_store(env),
        allowances=[ab.Allowance(per="user", window="day", tokens=PER_RUN)],  # one call
        lease_s=lease_s,
    )
    guard = ab.Guard(budgets=b)
    agents = [slow_agent(call_s) for _ in range(5)]

    async def run(index: int) -> bool:
        await asyncio.sleep(index * call_s / 5)  # later runs start after the first lease
        try:
            await guard.run(agents[index], QUESTION, user="u")
            return True
        except ab.BudgetExhausted:
            return False

    admitted = await asyncio.gather(*(run(i) for i in range(5)))
    assert admitted == [True, False, False, False, False]
    assert all(a.model.calls == () for a in agents[1:])  # type: ignore[union-attr]
    (row,) = await b.spend(user="u")
    assert (row.spent, row.reserved) == (PER_RUN, 0)
    await b.close()


async def test_renewals_stop_when_the_call_settles(env: Env) -> None:
    store = real_time_store(env)
    renewals: list[str] = []
    renew = store.renew

    async def counting(reservation_id: str, *, lease_s: float) -> bool:
        renewals.append(reservation_id)
        return await renew(reservation_id, lease_s=lease_s)

    store.renew = counting  # type: ignore[method-assign]
    b = ab.Budgets(
        store=store, allowances=[ab.Allowance(per="user", window="day", tokens=10**6)], lease_s=0.3
    )
    await ab.Guard(budgets=b).run(slow_agent(0.45), QUESTION, user="u")
    during = len(renewals)
    assert during >= 3  # every 0.1 s while the call lived
    await asyncio.sleep(0.35)
    assert len(renewals) == during  # none after the settle
    await b.close()


async def test_a_dropped_reservation_stops_being_renewed_and_lapses() -> None:
    store = MemoryStore(clock=time.time)
    allowance = ab.Allowance(per="user", window="total", tokens=1_000)
    b = ab.Budgets(store=store, allowances=[allowance], lease_s=0.2)
    reservation = b._reservation("u", None, tokens=500, nanos=0)
    assert (await b._reserve(reservation)).ok
    b._keep(reservation)
    key = reservation.charges[0].key
    await asyncio.sleep(0.3)
    assert (await store.state(key)).reserved == 500  # renewed past its first lease
    del reservation  # leaked without a settle: nothing keeps renewing it
    await asyncio.sleep(0.45)
    assert (await store.state(key)).reserved == 0
    await b.close()


# -- settles the store cannot take now ------------------------------------------------


class FlakyStore(MemoryStore):
    """A memory store whose settles fail while ``down``; ``lost_replies`` settles land but
    report a failure (the reply was lost), as a timed-out command can."""

    def __init__(self) -> None:
        super().__init__(clock=time.time)
        self.down = False
        self.lost_replies = 0
        self.settle_calls = 0

    async def _do_settle(self, reservation_id: str, actual: tuple[int, ...] | None) -> None:
        self.settle_calls += 1
        if self.down:
            raise StoreUnavailable("store down", url=self.url)
        await super()._do_settle(reservation_id, actual)
        if self.lost_replies:
            self.lost_replies -= 1
            raise StoreUnavailable("reply lost", url=self.url)


def one_call_agent(output_tokens: int = 100) -> Agent[Any]:
    return Agent(
        name="a",
        model=scripted_model(
            "gpt-4o", [ModelStep.respond(billed("gpt-4o", output_tokens=output_tokens))]
        ),
        model_settings=ModelSettings(max_tokens=100),
    )


async def test_a_settle_the_store_cannot_take_is_kept_and_lands_once() -> None:
    store = FlakyStore()
    allowance = ab.Allowance(per="user", window="day", tokens=10_000)
    b = ab.Budgets(store=store, allowances=[allowance], lease_s=0.3)
    guard = ab.Guard(budgets=b)
    store.down = True
    result = await guard.run(one_call_agent(40), QUESTION, user="u")  # fail="closed"
    assert result.final_output == "answer"
    used = ab.report_of(result).total_tokens
    assert b.pending_settles == 1
    await asyncio.sleep(0.5)  # longer than the lease: the hold is still renewed
    (row,) = await b.spend(user="u")
    assert (row.spent, row.reserved) == (0, PER_RUN)
    store.down = False
    assert await b.drain() == 0
    (row,) = await b.spend(user="u")
    assert (row.spent, row.reserved) == (used, 0)
    assert b.pending_settles == 0


async def test_a_settle_whose_reply_was_lost_is_retried_without_double_counting() -> None:
    store = FlakyStore()
    b = ab.Budgets(store=store, allowances=[ab.Allowance(per="user", window="day", tokens=10**6)])
    store.lost_replies = 2
    result = await ab.Guard(budgets=b).run(one_call_agent(40), QUESTION, user="u")
    await b.drain()
    assert store.settle_calls == 3
    (row,) = await b.spend(user="u")
    assert row.spent == ab.report_of(result).total_tokens and row.reserved == 0


async def test_drain_with_a_timeout_reports_what_is_still_pending() -> None:
    store = FlakyStore()
    b = ab.Budgets(store=store, allowances=[ab.Allowance(per="user", window="day", tokens=10**6)])
    store.down = True
    await ab.Guard(budgets=b).run(one_call_agent(), QUESTION, user="u")
    assert await b.drain(timeout=0.2) == 1
    store.down = False
    assert await b.drain(timeout=5) == 0


async def test_close_gives_up_after_its_timeout_and_says_what_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    b = ab.Budgets(store=store, allowances=[ab.Allowance(per="user", window="day", tokens=10**6)])
    store.down = True
    await ab.Guard(budgets=b).run(one_call_agent(), QUESTION, user="u")
    with caplog.at_level(logging.ERROR, logger="agentbudget"):
        await b.close(timeout=0.2)
    assert "closing budgets with 1 settles the store has not taken" in caplog.text


async def test_a_settle_kept_on_one_event_loop_lands_from_the_next() -> None:
    store = FlakyStore()
    b = ab.Budgets(store=store, allowances=[ab.Allowance(per="user", window="day", tokens=10**6)])

    def first() -> int:
        async def main() -> int:
            store.down = True
            result = await ab.Guard(budgets=b).run(one_call_agent(40), QUESTION, user="u")
            return ab.report_of(result).total_tokens

        return asyncio.run(main())  # ends with the settle still pending

    used = await asyncio.to_thread(first)
    assert b.pending_settles == 1
    store.down = False
    assert await b.drain(timeout=5) == 0
    (row,) = await b.spend(user="u")
    assert row.spent == used


def redis_budgets(
    server: RedisServer, tmp_path: Path, fail: str, *, journal: bool, **options: Any
) -> ab.Budgets:
    return ab.Budgets(
        store=server.url,
        store_options={"prefix": f"test-{uuid.uuid4().hex}", **options},
        allowances=[
            ab.Allowance(per="user", window="day", tokens=10**6),
            ab.Allowance(per="global", window="month", usd="100"),
        ],
        fail=fail,  # type: ignore[arg-type]
        journal=tmp_path / "journal.jsonl" if journal else None,
    )


@pytest.mark.redis
@pytest.mark.parametrize(
    ("fail", "journal", "timeout"),
    [
        ("closed", False, 2.0),  # the settle waits out the pause
        ("closed", False, 0.5),  # the settle times out: kept and retried
        ("closed", True, 0.5),  # kept in the journal too
        ("open", True, 0.5),
    ],
)
async def test_a_redis_write_pause_during_a_paid_call_loses_nothing(
    private_redis: RedisServer, tmp_path: Path, fail: str, journal: bool, timeout: float
) -> None:
    b = redis_budgets(private_redis, tmp_path, fail, journal=journal, socket_timeout_s=timeout)
    guard = ab.Guard(budgets=b)
    agent = slow_agent(0.05, during=lambda: pause_writes(private_redis, 1.5))
    try:
        result = await guard.run(agent, QUESTION, user="u")
        assert result.final_output == "answer"
        report = ab.report_of(result)
        # a settle that timed out in the pause is kept (in memory or in the journal)
        assert b.pending_settles == (1 if timeout < 1.5 else 0)
        assert await b.drain(timeout=10) == 0
        tokens, usd = await b.spend(user="u")
        assert (tokens.spent, tokens.reserved) == (report.total_tokens, 0)
        assert report.cost_usd is not None and usd.spent == int(report.cost_usd * 10**9)
        if journal:
            assert not (tmp_path / "journal.jsonl").read_text().strip()
    finally:
        await b.close()


# -- cancellation ----------------------------------------------------------------------


_SLOW = contextvars.ContextVar("slow", default=False)


class SlowReserveMemory(MemoryStore):
    """Reserves take 0.3 s (before they land)."""

    landed = 0

    async def _do_reserve(self, *args: Any) -> Any:
        await asyncio.sleep(0.3)
        result = await super()._do_reserve(*args)
        self.landed += 1
        return result


class SlowReserveSQLite(SQLiteStore):
    """Reserves take 0.3 s in the store's worker thread: they land after a cancel."""

    landed = 0

    async def _do_reserve(self, *args: Any) -> Any:
        _SLOW.set(True)  # copied into the worker thread by asyncio.to_thread
        return await super()._do_reserve(*args)

    def _transaction(self, operation: Any) -> Any:
        if not _SLOW.get():
            return super()._transaction(operation)
        time.sleep(0.3)
        result = super()._transaction(operation)
        self.landed += 1
        return result


class SlowLinkRedis(RedisStore):
    """A Redis store behind a slow proxy; counts reserves whose reply came back."""

    landed = 0

    async def _do_reserve(self, *args: Any) -> Any:
        result = await super()._do_reserve(*args)
        self.landed += 1
        return result


async def _cancelled_while_reserving(store: Any, count: int = 3) -> CounterState:
    """Runs that time out while their reserve is in flight hold nothing once the reserves
    have landed."""
    allowance = ab.Allowance(per="user", window="total", tokens=PER_RUN * count)
    b = ab.Budgets(store=store, allowances=[allowance])
    guard = ab.Guard(limits=ab.Limits(max_seconds=0.1), budgets=b)
    agents = [one_call_agent() for _ in range(count)]
    outcomes = await asyncio.gather(
        *(guard.run(a, QUESTION, user="u") for a in agents), return_exceptions=True
    )
    assert all(isinstance(o, ab.TimeLimitExceeded) for o in outcomes), outcomes
    assert all(a.model.calls == () for a in agents)  # type: ignore[union-attr]
    await b.drain()
    for _ in range(100):  # until every reserve in flight has landed (at most 5 s)
        if store.landed == count:
            break
        await asyncio.sleep(0.05)
    assert store.landed == count  # the reserves did reach the store
    await b.drain()
    key = b._reservation("u", None, 0, 0).charges[0].key
    state = await store.state(key)
    await b.close()
    return state


async def test_a_reserve_in_flight_when_the_run_times_out_is_released_memory() -> None:
    assert await _cancelled_while_reserving(SlowReserveMemory()) == CounterState(0, 0)


async def test_a_reserve_in_flight_when_the_run_times_out_is_released_sqlite(
    tmp_path: Path,
) -> None:
    store = SlowReserveSQLite(f"sqlite:///{tmp_path}/b.db")
    assert await _cancelled_while_reserving(store) == CounterState(0, 0)


@pytest.mark.redis
async def test_a_reserve_in_flight_when_the_run_times_out_is_released_redis(
    private_redis: RedisServer,
) -> None:
    proxy = SlowProxy(private_redis.port, delay=0.15)  # > max_seconds with the reply
    store = SlowLinkRedis(proxy.url, prefix=f"test-{uuid.uuid4().hex}")
    try:
        assert await _cancelled_while_reserving(store, count=10) == CounterState(0, 0)
    finally:
        proxy.close()


async def test_a_cancelled_call_settles_its_input_and_keeps_no_hold(env: Env) -> None:
    allowance = ab.Allowance(per="user", window="day", tokens=10**6)
    b = ab.Budgets(store=real_time_store(env), allowances=[allowance], lease_s=0.3)
    guard = ab.Guard(limits=ab.Limits(max_seconds=0.2), budgets=b)
    with pytest.raises(ab.TimeLimitExceeded):
        await guard.run(slow_agent(5), QUESTION, user="u")
    await b.drain()
    (row,) = await b.spend(user="u")
    assert row.reserved == 0 and row.spent == PER_RUN - 100  # the input was sent
    await asyncio.sleep(0.35)
    assert (await b.spend(user="u"))[0].reserved == 0  # and nothing renews it
    await b.close()
