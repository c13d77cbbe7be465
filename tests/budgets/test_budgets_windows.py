"""Windows: late settles land in their window, labels through DST, the server's clock."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from agents import Agent, ModelSettings
from agents.testing import ModelStep
from helpers.billing import billed
from helpers.stores_support import Env, FakeClock, RedisServer

import agentbudget as ab
from agentbudget.budgets import _window
from agentbudget.testing import scripted_model
from agentbudget.tokens import estimate_call_input

QUESTION = "What is the refund policy?"
PER_RUN = estimate_call_input("gpt-4o", None, [{"role": "user", "content": QUESTION}]).tokens + 100
NEW_YORK = ZoneInfo("America/New_York")


def one_call_agent() -> Agent[Any]:
    return Agent(
        name="a",
        model=scripted_model("gpt-4o", [ModelStep.respond(billed("gpt-4o", output_tokens=100))]),
        model_settings=ModelSettings(max_tokens=100),
    )


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_hour_labels_are_unique_through_the_fall_back() -> None:
    hourly = ab.Allowance(per="user", window="hour", tokens=1)
    # 2026-11-01: 01:00-02:00 EDT (05:00Z), then 01:00-02:00 EST again (06:00Z)
    first = _window(hourly, utc("2026-11-01T05:30:00"), NEW_YORK)
    repeated = _window(hourly, utc("2026-11-01T06:30:00"), NEW_YORK)
    after = _window(hourly, utc("2026-11-01T07:30:00"), NEW_YORK)
    assert [w[0] for w in (first, repeated, after)] == [
        "2026-11-01T01",
        "2026-11-01T01-0500",
        "2026-11-01T02",
    ]
    assert first[2] == (utc("2026-11-01T05:00:00"), utc("2026-11-01T06:00:00"))
    assert repeated[2] == (utc("2026-11-01T06:00:00"), utc("2026-11-01T07:00:00"))
    assert repeated[1] == 1800  # seconds to the end of the repeated hour, not 5,400


def test_hour_windows_through_the_spring_forward_last_an_hour() -> None:
    hourly = ab.Allowance(per="user", window="hour", tokens=1)
    # 2026-03-08: 01:59:59 EST is followed by 03:00:00 EDT
    label, _, span = _window(hourly, utc("2026-03-08T06:30:00"), NEW_YORK)
    assert label == "2026-03-08T01" and span == (
        utc("2026-03-08T06:00:00"),
        utc("2026-03-08T07:00:00"),
    )
    assert _window(hourly, utc("2026-03-08T07:10:00"), NEW_YORK)[0] == "2026-03-08T03"
    daily = ab.Allowance(per="user", window="day", tokens=1)
    _, _, (start, end) = _window(daily, utc("2026-03-08T12:00:00"), NEW_YORK)
    assert end - start == 23 * 3600


async def test_fall_back_hours_have_a_counter_each() -> None:
    clock = FakeClock(utc("2026-11-01T05:30:00"))
    b = ab.Budgets(
        store="memory://",
        clock=clock,
        tz="America/New_York",
        allowances=[ab.Allowance(per="user", window="hour", tokens=PER_RUN)],  # one call
    )
    guard = ab.Guard(budgets=b)
    await guard.run(one_call_agent(), QUESTION, user="u")
    with pytest.raises(ab.BudgetExhausted):
        await guard.run(one_call_agent(), QUESTION, user="u")
    clock.advance(3600)  # 01:30 again, an hour later: a new window
    await guard.run(one_call_agent(), QUESTION, user="u")
    (row,) = await b.spend(user="u")
    assert (row.window, row.spent) == ("2026-11-01T01-0500", PER_RUN)


@pytest.mark.parametrize("env", ["memory", "sqlite"], indirect=True)
async def test_a_call_admitted_before_midnight_settles_into_its_day(env: Env) -> None:
    """Admitted at 23:58, settled at 00:06, after the day's counter and its grace: the
    spend lands in the day it was reserved in (not lost, not charged to the new day)."""
    clock = FakeClock(utc("2026-03-10T23:58:00"))
    store = env.make(clock=clock)  # grace 300 s
    b = ab.Budgets(
        store=store,
        clock=clock,
        allowances=[ab.Allowance(per="user", window="day", tokens=10**6)],
        lease_s=3600,
    )
    meter_agent = one_call_agent()

    async def late(call: Any) -> Any:
        clock.advance(8 * 60)  # the call ends at 00:06
        return billed("gpt-4o", output_tokens=100)(call)

    meter_agent.model = scripted_model("gpt-4o", [ModelStep.respond(late)])
    await ab.Guard(budgets=b).run(meter_agent, QUESTION, user="u")
    key = b._reservation("u", None, 0, 0).charges[0].key  # the new day's counter
    assert (await store.state(key)).spent == 0
    clock.now = utc("2026-03-10T23:59:00")
    (row,) = await b.spend(user="u")
    assert (row.window, row.spent) == ("2026-03-10", PER_RUN)


@pytest.mark.redis
async def test_redis_windows_follow_the_server_clock_not_the_clients(
    private_redis: RedisServer,
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    allowance = ab.Allowance(per="user", window="hour", tokens=PER_RUN)  # one call an hour

    def worker(skew_s: float) -> ab.Budgets:
        return ab.Budgets(
            store=private_redis.url,
            store_options={"prefix": prefix},
            allowances=[allowance],
            clock=lambda: time.time() + skew_s,
        )

    ahead, behind = worker(2 * 3600 + 61), worker(-2 * 3600 - 61)
    try:
        await ab.Guard(budgets=ahead).run(one_call_agent(), QUESTION, user="u")
        refused = one_call_agent()
        with pytest.raises(ab.BudgetExhausted):
            await ab.Guard(budgets=behind).run(refused, QUESTION, user="u")
        assert refused.model.calls == ()  # type: ignore[union-attr]
        server_hour = _window(allowance, time.time(), ZoneInfo("UTC"))[0]
        for b in (ahead, behind):  # both now read the server's hour
            (row,) = await b.spend(user="u")
            assert (row.window, row.spent) == (server_hour, PER_RUN)
    finally:
        await ahead.close()
        await behind.close()
