"""Counters are exact integers on every store, far beyond 2**53 (Lua's doubles)."""

from __future__ import annotations

import pytest
from helpers.stores_support import Env

from agentbudget.errors import ConfigurationError
from agentbudget.stores import MAX_UNITS, Charge, CounterState
from agentbudget.stores.base import MAX_SECONDS


async def test_amounts_just_past_2_53_are_compared_exactly(env: Env) -> None:
    store = env.make()
    limit = 2**53 + 3  # as doubles, 2**53 + 1 and 2**53 are the same number
    assert (await store.reserve([Charge("k", limit, 2**53 + 1)], reservation_id="a", lease_s=60)).ok
    assert (await store.reserve([Charge("k", limit, 2)], reservation_id="b", lease_s=60)).ok
    refused = await store.reserve([Charge("k", limit, 1)], reservation_id="c", lease_s=60)
    assert (refused.ok, refused.available) == (False, 0)
    assert await store.state("k") == CounterState(0, 2**53 + 3)
    await store.settle("a", [2**53 + 1])
    await store.release("b")
    assert await store.state("k") == CounterState(2**53 + 1, 0)


async def test_a_hundred_million_dollars_and_overspend_beyond_the_limit_stay_exact(
    env: Env,
) -> None:
    store = env.make()
    usd_100m = 100_000_000 * 10**9  # nano-dollars
    tokens = 10**15
    charges = [Charge("usd", usd_100m, usd_100m - 7), Charge("tok", tokens, tokens - 1)]
    assert (await store.reserve(charges, reservation_id="a", lease_s=60)).ok
    await store.settle("a", [usd_100m - 7, tokens - 1])
    assert await store.state("usd") == CounterState(usd_100m - 7, 0)
    assert await store.state("tok") == CounterState(tokens - 1, 0)

    # the maximum, overspent by a settle larger than its reservation
    assert (await store.reserve([Charge("max", MAX_UNITS, 1)], reservation_id="b", lease_s=60)).ok
    await store.settle("b", [MAX_UNITS])
    assert (
        await store.reserve([Charge("max", MAX_UNITS, 1)], reservation_id="c", lease_s=60)
    ).ok is False
    refused = await store.reserve([Charge("max", MAX_UNITS, 5)], reservation_id="d", lease_s=60)
    assert refused.available == 0
    await store.reset("max")
    assert (await store.reserve([Charge("max", MAX_UNITS, 3)], reservation_id="e", lease_s=60)).ok
    await store.settle("e", [MAX_UNITS + 0])
    await store.record("f", [Charge("max", MAX_UNITS, 0)], [MAX_UNITS])  # type: ignore[attr-defined]
    over = await store.reserve([Charge("max", MAX_UNITS, 1)], reservation_id="g", lease_s=60)
    assert (over.ok, over.available) == (False, -MAX_UNITS)  # exact, and negative
    assert await store.state("max") == CounterState(2 * MAX_UNITS, 0)


async def test_big_holds_are_returned_exactly_when_their_lease_passes(timed_env: Env) -> None:
    store = timed_env.make()
    big = 3 * 10**17 + 1
    for rid in ("a", "b", "c"):
        assert (
            await store.reserve([Charge("k", MAX_UNITS, big)], reservation_id=rid, lease_s=0.2)
        ).ok
    assert (await store.reserve([Charge("k", MAX_UNITS, 5)], reservation_id="d", lease_s=60)).ok
    assert await store.state("k") == CounterState(0, 3 * big + 5)
    await timed_env.advance(0.3)
    assert await store.state("k") == CounterState(0, 5)


@pytest.mark.parametrize(
    "charge",
    [
        {"limit": MAX_UNITS + 1, "amount": 1},
        {"limit": 1, "amount": MAX_UNITS + 1},
        {"limit": 1, "amount": 1, "ttl_s": MAX_SECONDS + 1},
    ],
    ids=repr,
)
def test_beyond_the_maximum_is_refused_when_the_charge_is_built(charge: dict[str, int]) -> None:
    with pytest.raises(
        ConfigurationError, match=str(MAX_SECONDS if "ttl_s" in charge else MAX_UNITS)
    ):
        Charge("k", **charge)


@pytest.mark.parametrize("option", ["lease_s", "grace_s", "retention_s"])
async def test_seconds_beyond_ten_years_are_refused(env: Env, option: str) -> None:
    store = env.make() if option == "lease_s" else None
    if store is None:
        with pytest.raises(ConfigurationError, match=str(MAX_SECONDS)):
            env.make(**{option: 1e300})
        return
    with pytest.raises(ConfigurationError, match=str(MAX_SECONDS)):
        await store.reserve([Charge("k", 10, 1)], reservation_id="a", lease_s=1e300)


async def test_a_lone_surrogate_key_is_a_configuration_error(env: Env) -> None:
    store = env.make()
    with pytest.raises(ConfigurationError, match="surrogate"):
        await store.reserve([Charge("user-\udc80", 10, 1)], reservation_id="a", lease_s=60)
    with pytest.raises(ConfigurationError, match="surrogate"):
        await store.state("user-\ud800")
    # valid non-ASCII is fine everywhere
    assert (
        await store.reserve([Charge("utilisateur-é-😀", 10, 1)], reservation_id="b", lease_s=60)
    ).ok
