"""A misconfigured store is refused before any model call, in both fail modes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.billing import QUESTION, agent
from helpers.stores_support import PASSWORD, PrivateRedis, free_port

import agentbudget as ab


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.stop()


def _budgets(url: str, fail: str, tmp_path: Path) -> ab.Budgets:
    options: dict[str, Any] = {"journal": tmp_path / "j.jsonl"} if fail == "open" else {}
    return ab.Budgets(
        store=url,
        fail=fail,  # type: ignore[arg-type]
        allowances=[ab.Allowance(per="user", window="day", tokens=1)],
        **options,
    )


@pytest.mark.slow
@pytest.mark.parametrize("fail", ["closed", "open"])
async def test_a_wrong_password_raises_configuration_error_with_zero_model_calls(
    private_redis: PrivateRedis, fail: str, tmp_path: Path
) -> None:
    b = _budgets(private_redis.url("wrong-pw"), fail, tmp_path)
    guard = ab.Guard(budgets=b)
    try:
        for _ in range(5):  # a 1-token allowance: nothing may ever be admitted
            model_agent = agent()
            with pytest.raises(ab.ConfigurationError) as caught:
                await guard.run(model_agent, QUESTION, user="u")
            assert not isinstance(caught.value, ab.StoreUnavailable)
            assert model_agent.model.calls == ()  # type: ignore[union-attr]
            assert "authentication failed" in str(caught.value)
            assert "wrong-pw" not in str(caught.value) and ":***@" in str(caught.value)
        with pytest.raises(ab.ConfigurationError):
            await b.check()
        assert not (tmp_path / "j.jsonl").exists()  # nothing was journaled as an outage
    finally:
        await b.close()


@pytest.mark.slow
@pytest.mark.parametrize("fail", ["closed", "open"])
async def test_check_passes_on_a_good_store_and_reports_a_down_one(
    private_redis: PrivateRedis, fail: str, tmp_path: Path
) -> None:
    good = _budgets(private_redis.url(PASSWORD), fail, tmp_path)
    down = _budgets(f"redis://127.0.0.1:{free_port()}/0", fail, tmp_path)
    try:
        await good.check()
        with pytest.raises(ab.StoreUnavailable):
            await down.check()  # at start-up, an outage is reported whatever fail= says
    finally:
        await good.close()
        await down.close()


@pytest.mark.slow
async def test_a_database_index_out_of_range_is_refused_before_the_call(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    b = _budgets(private_redis.url(PASSWORD, db="99"), "open", tmp_path)
    model_agent = agent()
    try:
        with pytest.raises(ab.ConfigurationError, match="database index"):
            await ab.Guard(budgets=b).run(model_agent, QUESTION, user="u")
        assert model_agent.model.calls == ()  # type: ignore[union-attr]
    finally:
        await b.close()
