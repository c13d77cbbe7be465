"""The store contract, run against every store (memory, SQLite, Redis)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers.stores_support import STORE_KINDS, Env

from agentbudget.errors import ConfigurationError
from agentbudget.stores import (
    MAX_UNITS,
    BudgetStore,
    Charge,
    CounterState,
    LeaseRenewer,
    ReservationNotFound,
    ReserveResult,
)

HOUR = 3600


async def test_a_store_is_a_budget_store(env: Env) -> None:
    store = env.make()
    assert isinstance(store, BudgetStore)
    assert store.url.split("://")[0] == env.url.split("://")[0]


async def test_reserve_holds_the_amount_without_spending_it(env: Env) -> None:
    store = env.make()
    result = await store.reserve([Charge("u", 100, 30, HOUR)], reservation_id="r1", lease_s=60)
    assert result == ReserveResult(ok=True, reservation_id="r1")
    assert await store.state("u") == CounterState(spent=0, reserved=30)


async def test_an_unknown_counter_reads_as_zero(env: Env) -> None:
    assert await env.make().state("never-used") == CounterState(spent=0, reserved=0)


async def test_reserve_admits_up_to_the_limit_exactly(env: Env) -> None:
    store = env.make()
    assert (await store.reserve([Charge("u", 100, 60, HOUR)], reservation_id="a", lease_s=60)).ok
    assert (await store.reserve([Charge("u", 100, 40, HOUR)], reservation_id="b", lease_s=60)).ok
    refused = await store.reserve([Charge("u", 100, 1, HOUR)], reservation_id="c", lease_s=60)
    assert refused == ReserveResult(False, "c", refused_index=0, available=0)
    assert await store.state("u") == CounterState(spent=0, reserved=100)


async def test_a_zero_limit_admits_only_zero(env: Env) -> None:
    store = env.make()
    assert (await store.reserve([Charge("z", 0, 0, HOUR)], reservation_id="a", lease_s=60)).ok
    refused = await store.reserve([Charge("z", 0, 1, HOUR)], reservation_id="b", lease_s=60)
    assert (refused.ok, refused.available) == (False, 0)


async def test_reserve_is_all_or_nothing(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("team", 100, 90, HOUR)], reservation_id="t", lease_s=60)
    charges = [
        Charge("user", 50, 20, HOUR),
        Charge("team", 100, 20, HOUR),
        Charge("global", 1000, 20, None),
    ]
    result = await store.reserve(charges, reservation_id="r", lease_s=60)
    assert result == ReserveResult(False, "r", refused_index=1, available=10)
    assert await store.state("user") == CounterState(0, 0)
    assert await store.state("team") == CounterState(0, 90)
    assert await store.state("global") == CounterState(0, 0)


async def test_refused_index_is_the_first_counter_that_does_not_fit(env: Env) -> None:
    store = env.make()
    charges = [Charge("ok", 10, 5), Charge("small", 3, 4), Charge("zero", 0, 1)]
    result = await store.reserve(charges, reservation_id="r", lease_s=60)
    assert (result.refused_index, result.available) == (1, 3)


async def test_available_is_negative_when_the_counter_is_overspent(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("u", 100, 50, HOUR)], reservation_id="a", lease_s=60)
    await store.settle("a", [130])  # the call cost more than reserved
    result = await store.reserve([Charge("u", 100, 0, HOUR)], reservation_id="b", lease_s=60)
    assert (result.ok, result.refused_index, result.available) == (False, 0, -30)


async def test_settle_turns_the_reservation_into_the_actual_spend(env: Env) -> None:
    store = env.make()
    charges = [Charge("user", 100, 40, HOUR), Charge("global", 1000, 40, None)]
    await store.reserve(charges, reservation_id="r", lease_s=60)
    await store.settle("r", [25, 26])
    assert await store.state("user") == CounterState(spent=25, reserved=0)
    assert await store.state("global") == CounterState(spent=26, reserved=0)


async def test_settle_records_more_than_was_reserved(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("u", 100, 40, HOUR)], reservation_id="r", lease_s=60)
    await store.settle("r", [150])
    assert await store.state("u") == CounterState(spent=150, reserved=0)


async def test_settling_twice_does_not_double_count(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("u", 100, 40, HOUR)], reservation_id="r", lease_s=60)
    await store.settle("r", [30])
    await store.settle("r", [30])
    await store.settle("r", [99])
    await store.release("r")
    assert await store.state("u") == CounterState(spent=30, reserved=0)


@pytest.mark.parametrize("env", STORE_KINDS[1:], indirect=True)  # memory is per instance
async def test_settle_is_shared_by_every_store_on_the_same_data(env: Env) -> None:
    first, second = env.make(), env.make()
    await first.reserve([Charge("u", 100, 40, HOUR)], reservation_id="r", lease_s=60)
    assert await second.state("u") == CounterState(0, 40)
    await second.settle("r", [35])
    assert await first.state("u") == CounterState(35, 0)


async def test_release_returns_the_whole_reservation(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("u", 100, 70, HOUR)], reservation_id="r", lease_s=60)
    await store.release("r")
    assert await store.state("u") == CounterState(spent=0, reserved=0)
    assert (await store.reserve([Charge("u", 100, 100, HOUR)], reservation_id="s", lease_s=60)).ok


async def test_release_of_an_unknown_id_does_nothing(env: Env) -> None:
    store = env.make()
    await store.release("never-reserved")
    await store.settle("never-reserved", [0, 0])
    assert await store.state("never-reserved") == CounterState(0, 0)


async def test_settling_an_unknown_id_with_spend_raises(env: Env) -> None:
    store = env.make()
    with pytest.raises(ReservationNotFound) as caught:
        await store.settle("never-reserved", [5])
    assert caught.value.reservation_id == "never-reserved"
    assert isinstance(caught.value, ConfigurationError)


async def test_settle_with_the_wrong_number_of_amounts_raises_and_changes_nothing(
    env: Env,
) -> None:
    store = env.make()
    await store.reserve([Charge("a", 10, 5), Charge("b", 10, 5)], reservation_id="r", lease_s=60)
    with pytest.raises(ConfigurationError, match="2 charges"):
        await store.settle("r", [5])
    assert await store.state("a") == CounterState(0, 5)
    await store.settle("r", [4, 3])
    assert (await store.state("a"), await store.state("b")) == (
        CounterState(4, 0),
        CounterState(3, 0),
    )


async def test_a_reservation_id_is_single_use(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("u", 100, 10, HOUR)], reservation_id="r", lease_s=60)
    with pytest.raises(ConfigurationError, match="already used"):
        await store.reserve([Charge("u", 100, 10, HOUR)], reservation_id="r", lease_s=60)
    assert await store.state("u") == CounterState(0, 10)
    await store.settle("r", [10])
    with pytest.raises(ConfigurationError, match="already used"):
        await store.reserve([Charge("u", 100, 10, HOUR)], reservation_id="r", lease_s=60)
    assert await store.state("u") == CounterState(10, 0)


async def test_a_refused_reservation_id_can_be_used_again(env: Env) -> None:
    store = env.make()
    refused = await store.reserve([Charge("u", 5, 10, HOUR)], reservation_id="r", lease_s=60)
    assert not refused.ok
    assert (await store.reserve([Charge("u", 50, 10, HOUR)], reservation_id="r", lease_s=60)).ok


async def test_reset_forgets_spend_and_holds_but_later_settles_still_count(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("u", 100, 40, HOUR)], reservation_id="a", lease_s=60)
    await store.settle("a", [40])
    await store.reserve([Charge("u", 100, 30, HOUR)], reservation_id="b", lease_s=60)
    await store.reset("u")
    assert await store.state("u") == CounterState(0, 0)
    await store.settle("b", [20])
    assert await store.state("u") == CounterState(20, 0)


async def test_record_settles_a_held_reservation(env: Env) -> None:
    store = env.make()
    await store.reserve([Charge("u", 100, 40, HOUR)], reservation_id="r", lease_s=60)
    applied = await store.record("r", [Charge("u", MAX_UNITS, 0, HOUR)], [33])
    assert applied
    assert await store.state("u") == CounterState(33, 0)
    await store.settle("r", [33])
    assert await store.state("u") == CounterState(33, 0)


async def test_record_of_an_unknown_id_adds_spend_once(env: Env) -> None:
    store = env.make()
    charges = [Charge("u", 0, 0, HOUR), Charge("g", 0, 0, None)]
    assert await store.record("journal-1", charges, [7, 8])
    assert not await store.record("journal-1", charges, [7, 8])
    await store.settle("journal-1", [7, 8])
    assert (await store.state("u"), await store.state("g")) == (
        CounterState(7, 0),
        CounterState(8, 0),
    )


# Leases and windows: the fake clock for memory and SQLite, real time for Redis.


async def test_an_expired_lease_returns_its_units_to_the_budget(timed_env: Env) -> None:
    store = timed_env.make()
    await store.reserve([Charge("u", 100, 80, HOUR)], reservation_id="crashed", lease_s=1)
    assert not (
        await store.reserve([Charge("u", 100, 30, HOUR)], reservation_id="a", lease_s=60)
    ).ok
    await timed_env.advance(1.2)
    assert await store.state("u") == CounterState(0, 0)
    assert (await store.reserve([Charge("u", 100, 100, HOUR)], reservation_id="b", lease_s=60)).ok


async def test_settling_after_the_lease_still_records_the_spend_once(timed_env: Env) -> None:
    store = timed_env.make()
    await store.reserve([Charge("u", 100, 80, HOUR)], reservation_id="slow", lease_s=1)
    await timed_env.advance(1.2)
    await store.reserve([Charge("u", 100, 50, HOUR)], reservation_id="next", lease_s=60)
    await store.settle("slow", [70])
    assert await store.state("u") == CounterState(spent=70, reserved=50)
    await store.settle("slow", [70])
    assert await store.state("u") == CounterState(spent=70, reserved=50)


async def test_a_counter_expires_after_its_window_plus_grace(timed_env: Env) -> None:
    store = timed_env.make(grace_s=1)
    await store.reserve([Charge("day", 100, 60, 1)], reservation_id="r", lease_s=60)
    await store.settle("r", [60])
    await timed_env.advance(1.4)  # the window ended, the grace period has not
    assert await store.state("day") == CounterState(60, 0)
    await timed_env.advance(0.9)
    assert await store.state("day") == CounterState(0, 0)
    assert (await store.reserve([Charge("day", 100, 100, 1)], reservation_id="s", lease_s=60)).ok


async def test_a_settle_after_the_window_is_gone_lands_in_that_window(timed_env: Env) -> None:
    store = timed_env.make(grace_s=1)
    await store.reserve([Charge("day", 100, 60, 1)], reservation_id="r", lease_s=60)
    await timed_env.advance(2.3)  # the window and its grace are over: the counter is gone
    assert await store.state("day") == CounterState(0, 0)
    await store.settle("r", [60])
    assert await store.state("day") == CounterState(60, 0)  # revived for the grace period
    await store.settle("r", [60])
    assert await store.state("day") == CounterState(60, 0)  # and only once
    await timed_env.advance(1.2)
    assert await store.state("day") == CounterState(0, 0)


async def test_a_renewed_lease_keeps_its_hold_past_the_first_lease(timed_env: Env) -> None:
    store = timed_env.make()
    assert isinstance(store, LeaseRenewer)
    await store.reserve([Charge("u", 100, 80, HOUR)], reservation_id="long", lease_s=1)
    for _ in range(3):  # 1.8 s in all: the first lease would have passed at 1 s
        await timed_env.advance(0.6)
        assert await store.renew("long", lease_s=1) is True
        assert await store.state("u") == CounterState(0, 80)
    assert not (
        await store.reserve([Charge("u", 100, 30, HOUR)], reservation_id="other", lease_s=60)
    ).ok
    await store.settle("long", [75])
    assert await store.state("u") == CounterState(75, 0)
    assert await store.renew("long", lease_s=1) is False  # settled: nothing to renew


async def test_a_lapsed_hold_is_not_taken_again_by_a_renewal(timed_env: Env) -> None:
    store = timed_env.make()
    assert isinstance(store, LeaseRenewer)
    await store.reserve([Charge("u", 100, 80, HOUR)], reservation_id="dead", lease_s=1)
    await timed_env.advance(1.2)
    assert await store.renew("dead", lease_s=60) is False
    assert await store.state("u") == CounterState(0, 0)
    assert await store.renew("never-reserved", lease_s=60) is False
    await store.settle("dead", [10])  # its record is kept: a late settle still counts
    assert await store.state("u") == CounterState(10, 0)


async def test_renewal_keeps_the_record_of_a_reservation_past_its_retention(
    timed_env: Env,
) -> None:
    store = timed_env.make(retention_s=1)
    assert isinstance(store, LeaseRenewer)
    await store.reserve([Charge("u", 100, 10, HOUR)], reservation_id="r", lease_s=1)
    for _ in range(4):  # 2.4 s: without renewals the record would be gone after 2 s
        await timed_env.advance(0.6)
        assert await store.renew("r", lease_s=1)
    await store.settle("r", [10])
    assert await store.state("u") == CounterState(10, 0)


async def test_a_reservation_is_forgotten_after_its_retention(timed_env: Env) -> None:
    store = timed_env.make(retention_s=1)
    await store.reserve([Charge("u", 100, 10, HOUR)], reservation_id="r", lease_s=1)
    await timed_env.advance(2.3)
    with pytest.raises(ReservationNotFound):
        await store.settle("r", [10])
    assert await store.state("u") == CounterState(0, 0)


async def test_a_counter_without_ttl_never_expires(env: Env) -> None:
    store = env.make(grace_s=0)
    await store.reserve([Charge("total", 100, 10, None)], reservation_id="r", lease_s=60)
    await store.settle("r", [10])
    if env.kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(env.url)
        try:
            assert await client.pttl(store.counter_key("total")) == -1  # type: ignore[attr-defined]
        finally:
            await client.aclose()
    else:
        await env.advance(10 * 365 * 86_400)
    assert await store.state("total") == CounterState(10, 0)


# Keys: any characters, any length, never colliding.

TRICKY_KEYS = [
    "user:42",
    "user:4:2",
    "user/42",
    "user:42:",
    "{user}:42",
    "ab:{agentbudget}:c:user:42",
    "ünïcødé:用户:🙂",
    "a" * 10_240,
    "a" * 10_239 + "b",
    " ",
    "\x00nul",
    "user:42\n",
]


async def test_keys_never_collide(env: Env) -> None:
    store = env.make()
    for index, key in enumerate(TRICKY_KEYS):
        charge = Charge(key, 1000, index + 1, HOUR)
        assert (await store.reserve([charge], reservation_id=f"r{index}", lease_s=60)).ok
        await store.settle(f"r{index}", [index + 1])
    for index, key in enumerate(TRICKY_KEYS):
        assert await store.state(key) == CounterState(index + 1, 0), key


async def test_reservation_ids_of_any_shape_are_distinct(env: Env) -> None:
    store = env.make()
    ids = ["r:1", "r:1:", "r/1", "{r}1", "ид", "r" * 10_240, "r" * 10_239 + "s"]
    for rid in ids:
        assert (await store.reserve([Charge(rid, 10, 1, HOUR)], reservation_id=rid, lease_s=60)).ok
    for rid in ids:
        await store.settle(rid, [1])
        assert await store.state(rid) == CounterState(1, 0)


# Validation: the same errors from every store.

BAD_CHARGES: list[dict[str, Any]] = [
    {"key": ""},
    {"key": 42},
    {"limit": -1},
    {"limit": 1.5},
    {"limit": True},
    {"limit": MAX_UNITS + 1},
    {"amount": -1},
    {"amount": 2.0},
    {"amount": None},
    {"ttl_s": -1},
    {"ttl_s": 1.5},
]


@pytest.mark.parametrize("bad", BAD_CHARGES, ids=lambda bad: repr(bad))
def test_a_bad_charge_is_a_configuration_error(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"key": "k", "limit": 10, "amount": 1, "ttl_s": 60, **bad}
    with pytest.raises(ConfigurationError):
        Charge(**fields)


@pytest.mark.parametrize(
    ("charges", "kwargs"),
    [
        ([], {}),
        ([Charge("k", 10, 1), Charge("k", 10, 1)], {}),
        (["not a charge"], {}),
        ([Charge("k", 10, 1)], {"reservation_id": ""}),
        ([Charge("k", 10, 1)], {"lease_s": 0}),
        ([Charge("k", 10, 1)], {"lease_s": -1}),
        ([Charge("k", 10, 1)], {"lease_s": math.nan}),
        ([Charge("k", 10, 1)], {"lease_s": math.inf}),
    ],
    ids=[
        "empty",
        "same-key-twice",
        "not-a-charge",
        "empty-id",
        "zero-lease",
        "negative-lease",
        "nan-lease",
        "inf-lease",
    ],
)
async def test_bad_reserve_arguments_are_configuration_errors(
    env: Env, charges: list[Any], kwargs: dict[str, Any]
) -> None:
    store = env.make()
    arguments: dict[str, Any] = {"reservation_id": "r", "lease_s": 60, **kwargs}
    with pytest.raises(ConfigurationError):
        await store.reserve(charges, **arguments)
    assert await store.state("k") == CounterState(0, 0)


@pytest.mark.parametrize("actual", [[-1], [1.5], [True], [MAX_UNITS + 1]], ids=repr)
async def test_bad_settle_amounts_are_configuration_errors(env: Env, actual: list[Any]) -> None:
    store = env.make()
    await store.reserve([Charge("k", 10, 1)], reservation_id="r", lease_s=60)
    with pytest.raises(ConfigurationError):
        await store.settle("r", actual)
    assert await store.state("k") == CounterState(0, 1)


async def test_bad_keys_and_ids_are_configuration_errors(env: Env) -> None:
    store = env.make()
    with pytest.raises(ConfigurationError):
        await store.state("")
    with pytest.raises(ConfigurationError):
        await store.reset("")
    with pytest.raises(ConfigurationError):
        await store.settle("", [1])
    with pytest.raises(ConfigurationError):
        await store.release("")


@pytest.mark.parametrize("option", [{"grace_s": -1}, {"retention_s": 0}, {"grace_s": math.nan}])
async def test_bad_store_options_are_configuration_errors(env: Env, option: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        env.make(**option)


async def test_large_values_up_to_max_units_are_exact(env: Env) -> None:
    store = env.make()
    big = MAX_UNITS - 1
    assert (
        await store.reserve([Charge("big", MAX_UNITS, big, None)], reservation_id="a", lease_s=60)
    ).ok
    refused = await store.reserve(
        [Charge("big", MAX_UNITS, 2, None)], reservation_id="b", lease_s=60
    )
    assert (refused.ok, refused.available) == (False, 1)
    await store.settle("a", [big])
    assert await store.state("big") == CounterState(big, 0)
