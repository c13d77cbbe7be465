"""One Budgets on Redis, used from many threads and from one event loop after another."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers.billing import QUESTION, agent, est
from helpers.loops import close_thread_loop
from helpers.stores_support import Env, RedisServer, free_port, require_redis_server_binary

import agentbudget as ab


def _store(env: Env) -> Any:
    # 4 threads connect at once on a shared, busy CI machine: a generous connect timeout
    return env.make(**({"connect_timeout_s": 10.0} if env.kind == "redis" else {}))


# Runner.run_sync shuts down the async generators of its thread's loop after each run but
# keeps the loop; redis-py's pool then starts an async generator on it, and asyncio warns.
@pytest.mark.filterwarnings(
    "ignore:asynchronous generator .* was scheduled after loop.shutdown_asyncgens:ResourceWarning"
)
def test_run_sync_from_4_threads_x_5_runs_has_exact_totals(env: Env) -> None:
    per_run = est() + 100  # the model uses its whole bound: worst case == actual
    fits = 12
    b = ab.Budgets(
        store=_store(env),
        allowances=[ab.Allowance(per="global", window="day", tokens=per_run * fits)],
        on_exhausted=[ab.Refuse("full")],
    )
    guard = ab.Guard(budgets=b)
    outcomes: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(5):
                try:
                    guard.run_sync(agent(), QUESTION, user="u")
                    outcome = "ok"
                except ab.BudgetExhausted:
                    outcome = "refused"
                with lock:
                    outcomes.append(outcome)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            close_thread_loop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert failures == []
    assert (outcomes.count("ok"), outcomes.count("refused")) == (fits, 20 - fits)

    async def spent() -> Any:
        (row,) = await b.spend()
        await b.close()
        return row

    row = asyncio.run(spent())
    assert (row.spent, row.reserved) == (per_run * fits, 0)


def test_sequential_asyncio_run_calls_share_one_budgets(env: Env) -> None:
    b = ab.Budgets(
        store=_store(env), allowances=[ab.Allowance(per="user", window="day", tokens=10**6)]
    )
    guard = ab.Guard(budgets=b)

    async def one_run() -> int:
        result = await guard.run(agent(output_tokens=30), QUESTION, user="u")
        return ab.report_of(result).total_tokens

    used = [asyncio.run(one_run()) for _ in range(3)]

    async def spent_and_close() -> int:
        (row,) = await b.spend(user="u")
        await b.close()
        return row.spent

    assert asyncio.run(spent_and_close()) == sum(used) == 3 * (est() + 30)


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:asynchronous generator .* was scheduled after loop.shutdown_asyncgens:ResourceWarning"
)
def test_fail_open_from_threads_journals_every_run_and_replays_exactly(tmp_path: Path) -> None:
    server = RedisServer(require_redis_server_binary(), free_port())  # not started: down
    journal = tmp_path / "journal.jsonl"
    b = ab.Budgets(
        store=server.url,
        fail="open",
        journal=journal,
        allowances=[ab.Allowance(per="user", window="day", tokens=10**6, soft=None)],
        store_options={"connect_timeout_s": 0.5},
    )
    guard = ab.Guard(budgets=b)
    used: list[int] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                result = guard.run_sync(agent(output_tokens=25), QUESTION, user="u")
                used.append(ab.report_of(result).total_tokens)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            close_thread_loop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and len(used) == 12
    server.start()
    try:

        async def replay_and_read() -> int:
            assert await b.store.replay() == 12  # type: ignore[attr-defined]
            (row,) = await b.spend(user="u")
            await b.close()
            return int(row.spent)

        assert asyncio.run(replay_and_read()) == sum(used) == 12 * (est() + 25)
        assert journal.read_bytes() == b""
    finally:
        server.stop()
