"""Bad input is refused at construction (or before any call), not at the first call."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from helpers.billing import QUESTION, agent
from helpers.stores_support import Env

import agentbudget as ab
from agentbudget.money import usd_to_nanos
from agentbudget.stores import MAX_UNITS, SQLiteStore

DAY = ab.Allowance(per="user", window="day", tokens=1_000)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"store": 123}, "store must be a URL"),
        ({"store": None}, "store must be a URL"),
        ({"tz": None}, "time zone"),
        ({"store": "redis://127.0.0.1:6379/abc"}, "must be a number"),
        ({"lease_s": 1e300}, "at most 315360000"),
        ({"lease_s": float("inf")}, "lease_s"),
        ({"lease_s": 0}, "lease_s"),
    ],
    ids=repr,
)
def test_bad_budgets_options_are_refused_at_construction(
    options: dict[str, object], match: str
) -> None:
    with pytest.raises(ab.ConfigurationError, match=match):
        ab.Budgets(allowances=[DAY], **options)  # type: ignore[arg-type]


def test_two_allowances_on_one_counter_are_refused() -> None:
    with pytest.raises(ab.ConfigurationError, match="share one counter"):
        ab.Budgets(allowances=[DAY, ab.Allowance(per="user", window="day", tokens=5)])
    with pytest.raises(ab.ConfigurationError, match="share one counter"):
        ab.Budgets(
            allowances=[
                ab.Allowance(per="global", window=3600, usd="1"),
                ab.Allowance(per="global", window=3600, usd="2", tokens=9),
            ]
        )
    # another unit, window or per is another counter
    ab.Budgets(
        allowances=[
            DAY,
            ab.Allowance(per="user", window="day", usd="1"),
            ab.Allowance(per="user", window="hour", tokens=5),
            ab.Allowance(per="team", window="day", tokens=5),
        ]
    )


def test_allowances_up_to_the_stores_maximum_and_no_further() -> None:
    assert ab.Allowance(per="global", window="month", usd="100000000").limits() == [
        ("nanousd", 100_000_000 * 10**9)
    ]
    assert ab.Allowance(per="global", window="month", usd="1000000000").limits() == [
        ("nanousd", MAX_UNITS)
    ]
    with pytest.raises(ab.ConfigurationError, match=r"at most \$1000000000 "):
        ab.Allowance(per="global", window="month", usd="1000000000.01")
    assert ab.Allowance(per="user", window="day", tokens=10**15).tokens == 10**15
    with pytest.raises(ab.ConfigurationError, match=str(MAX_UNITS)):
        ab.Allowance(per="user", window="day", tokens=MAX_UNITS + 1)
    with pytest.raises(ab.ConfigurationError, match="315360000"):
        ab.Allowance(per="user", window=10**20, tokens=1)


async def test_a_ten_million_dollar_allowance_is_charged_exactly(env: Env) -> None:
    b = ab.Budgets(
        store=env.make(),
        allowances=[
            ab.Allowance(per="global", window="month", usd="10000000"),
            ab.Allowance(per="global", window="day", tokens=10**15),
        ],
    )
    result = await ab.Guard(budgets=b).run(agent(output_tokens=40), QUESTION, user="u")
    report = ab.report_of(result)
    rows = {row.unit: row for row in await b.spend()}
    assert report.cost_usd is not None
    assert rows["nanousd"].spent == usd_to_nanos(report.cost_usd)
    assert rows["nanousd"].limit == 10_000_000 * 10**9
    assert rows["tokens"].spent == report.total_tokens


@pytest.mark.parametrize("where", ["guard", "scope"])
async def test_a_user_id_with_a_lone_surrogate_is_refused_before_any_call(
    env: Env, where: str
) -> None:
    b = ab.Budgets(store=env.make(), allowances=[DAY])
    model_agent = agent()
    with pytest.raises(ab.ConfigurationError, match="surrogate"):
        if where == "guard":
            await ab.Guard(budgets=b).run(model_agent, QUESTION, user="u-\udcff")
        else:
            ab.configure(budgets=b)
            async with ab.budget(user="\ud83d"):
                pass
    assert model_agent.model.calls == ()  # type: ignore[union-attr]


async def test_a_first_connection_to_a_non_wal_file_waits_for_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE app (x)")  # an existing file in rollback-journal mode
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout_s=5)
    started = time.monotonic()
    try:
        assert (await store.reserve([ab_charge()], reservation_id="a", lease_s=60)).ok
    finally:
        await store.close()
        other.close()
    assert 0.2 < time.monotonic() - started < 4


def ab_charge() -> object:
    from agentbudget.stores import Charge

    return Charge("k", 10, 1)


def test_a_journal_path_that_cannot_be_written_is_refused_when_budgets_are_built(
    tmp_path: Path,
) -> None:
    with pytest.raises(ab.ConfigurationError, match="is a directory"):
        ab.Budgets(allowances=[DAY], fail="open", journal=tmp_path)
    with pytest.raises(ab.ConfigurationError, match="cannot be written"):
        ab.Budgets(allowances=[DAY], fail="open", journal="/proc/agentbudget.jsonl")
