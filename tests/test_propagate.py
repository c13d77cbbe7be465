"""ab.propagate: a run started in a worker thread of a governed tool is governed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from agents import Agent, Runner, function_tool

import agentbudget as ab
from agentbudget.testing import reply, scripted_model, tool_call, tool_loop


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"result for {q}"


def _sub_agent(turns: int) -> Agent[Any]:
    return Agent(
        name="worker",
        tools=[lookup],
        model=scripted_model(
            "gpt-4o-mini",
            [*tool_loop("lookup", times=turns, arguments={"q": "x"}), reply("done")],
        ),
    )


def _top_agent(hand_over: Callable[[Callable[[], Any]], Callable[[], Any]]) -> Agent[Any]:
    """A governed agent whose tool starts a sub-run in an executor thread."""
    sub = _sub_agent(turns=3)

    def sub_run() -> str:  # in the worker thread: its own event loop
        result = asyncio.run(Runner.run(sub, "dig"))
        return str(result.final_output)

    @function_tool
    async def research(topic: str) -> str:
        """Research a topic in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, hand_over(sub_run))  # type: ignore[no-any-return]

    return Agent(
        name="boss",
        tools=[research],
        model=scripted_model("gpt-4o", [tool_call("research", {"topic": "t"}), reply("ok")]),
    )


def _propagated(fn: Callable[[], Any]) -> Callable[[], Any]:
    return ab.propagate(fn)


def _bare(fn: Callable[[], Any]) -> Callable[[], Any]:
    return fn


async def test_a_sub_run_in_an_executor_thread_is_charged_to_the_run_and_its_budget() -> None:
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=10**6)])
    result = await ab.Guard(budgets=budgets).run(_top_agent(_propagated), "go", user="u-1")
    report = ab.report_of(result)
    assert [c.agent for c in report.calls].count("worker") == 4  # 3 tool turns + answer
    assert {c.agent for c in report.calls} == {"boss", "worker"}
    (row,) = await budgets.spend(user="u-1")
    assert row.spent == report.total_tokens  # the worker's calls were reserved and settled


async def test_without_propagate_the_sub_run_escapes(caplog: pytest.LogCaptureFixture) -> None:
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=10**6)])
    result = await ab.Guard(budgets=budgets).run(_top_agent(_bare), "go", user="u-1")
    report = ab.report_of(result)
    assert {c.agent for c in report.calls} == {"boss"}  # what propagate() is for
    (row,) = await budgets.spend(user="u-1")
    assert row.spent == report.total_tokens


async def test_the_runs_limits_stop_a_sub_run_in_a_worker_thread() -> None:
    guard = ab.Guard(limits=ab.Limits(max_llm_calls=3))
    with pytest.raises(ab.LLMCallLimitExceeded) as info:
        await guard.run(_top_agent(_propagated), "go")
    report = info.value.report
    assert report is not None
    # the boss's call and two of the worker's; the worker's third is stopped before it is sent
    assert [c.agent for c in report.calls] == ["boss", "worker", "worker"]
    assert (info.value.allowed, info.value.observed) == (3, 4)
    await guard.run(_top_agent(_bare), "go")  # unwrapped, the worker's 4 calls escape the limit


def test_propagate_into_a_thread_pool_keeps_each_calls_context_apart() -> None:
    from agentbudget.current import SCOPES

    seen: list[int] = []

    def work(n: int) -> int:
        seen.append(len(SCOPES.get()))
        return n * 2

    async def main() -> list[int]:
        async with ab.budget(max_llm_calls=5):
            wrapped = ab.propagate(work)
            with ThreadPoolExecutor(2) as pool:
                return list(pool.map(wrapped, range(4)))

    assert asyncio.run(main()) == [0, 2, 4, 6]
    assert seen == [1, 1, 1, 1]  # the scope is visible in every worker call
    assert ab.propagate(work).__name__ == "work"
