"""budget(): cumulative limits over plain Runner calls, nested scopes, as_tool runs."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, Runner, function_tool

import agentbudget as ab
from agentbudget.testing import reply, scripted_model, tool_call, tool_loop

calls: list[str] = []


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    calls.append(q)
    return "found"


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def answering(cost_in: int = 1_000, out: int = 100, model: str = "gpt-4o") -> Agent[Any]:
    return Agent(
        name="qa",
        model=scripted_model(model, [reply("answer", input_tokens=cost_in, output_tokens=out)]),
    )


def tool_then_answer(name: str = "worker") -> Agent[Any]:
    return Agent(
        name=name,
        tools=[lookup],
        model=scripted_model("gpt-4o", [tool_call("lookup", {"q": name}), reply("done")]),
    )


async def test_async_with_scope_counts_every_plain_run() -> None:
    async with ab.budget(max_tool_calls=10) as scope:
        r1 = await Runner.run(tool_then_answer("a"), "go")
        r2 = await Runner.run(answering(), "go")
    assert scope.tool_calls == 1 and scope.llm_calls == 3
    assert [r.agent for r in scope.reports] == ["a", "qa"]
    assert scope.cost_usd == sum(r.cost_usd for r in scope.reports)
    assert scope.tokens == sum(r.total_tokens for r in scope.reports)
    assert ab.report_of(r1) == scope.reports[0] and ab.report_of(r2) == scope.reports[1]


async def test_limits_are_cumulative_across_runs_in_a_scope() -> None:
    with pytest.raises(ab.ToolCallLimitExceeded):
        async with ab.budget(max_tool_calls=2) as scope:
            for name in ("a", "b", "c"):
                await Runner.run(tool_then_answer(name), "go")
    assert calls == ["a", "b"]
    assert scope.tool_calls == 2
    assert [r.outcome for r in scope.reports] == ["completed", "completed", "tripped"]


async def test_async_decorator_makes_a_fresh_scope_per_call() -> None:
    @ab.budget(max_tool_calls=1, user="u-7")
    async def handle(name: str) -> Any:
        return await Runner.run(tool_then_answer(name), "go")

    first = await handle("a")
    second = await handle("b")  # a fresh scope: the first call's tool call does not count
    assert ab.report_of(first).user == "u-7" and ab.report_of(second).tool_calls == 1


def test_sync_decorator_and_with(close_sdk_loop: None) -> None:
    @ab.budget(max_llm_calls=1)
    def handle() -> Any:
        return Runner.run_sync(tool_then_answer(), "go")

    with pytest.raises(ab.LLMCallLimitExceeded):
        handle()
    with ab.budget(max_llm_calls=5) as scope:
        Runner.run_sync(tool_then_answer(), "go")
    assert scope.llm_calls == 2


async def test_nested_scopes_all_apply() -> None:
    async with ab.budget(max_tool_calls=10) as outer:
        with pytest.raises(ab.ToolCallLimitExceeded):
            async with ab.budget(max_tool_calls=1) as inner:
                await Runner.run(tool_then_answer("a"), "go")
                await Runner.run(tool_then_answer("b"), "go")
        await Runner.run(tool_then_answer("c"), "go")
    assert inner.tool_calls == 1
    assert outer.tool_calls == 2 and calls == ["a", "c"]


async def test_inner_scope_cannot_escape_the_outer_limit() -> None:
    with pytest.raises(ab.ToolCallLimitExceeded) as info:
        async with ab.budget(max_tool_calls=1):
            async with ab.budget(max_tool_calls=10):
                await Runner.run(tool_then_answer("a"), "go")
                await Runner.run(tool_then_answer("b"), "go")
    assert calls == ["a"] and info.value.allowed == 1


async def test_scope_cost_limit_with_guard_run_inside() -> None:
    with pytest.raises(ab.CostLimitExceeded):
        async with ab.budget(max_cost_usd="0.0045") as scope:
            for _ in range(5):
                agent = Agent(
                    name="qa",
                    instructions="z " * 1_000,
                    model=scripted_model(
                        "gpt-4o", [reply("a", input_tokens=1_003, output_tokens=100)]
                    ),
                )
                await ab.Guard().run(agent, "q")
    assert scope.cost_usd <= Decimal("0.0045")
    assert scope.llm_calls == 1


async def test_concurrent_scopes_never_cross_talk() -> None:
    async def one(i: int) -> tuple[int, int, int]:
        limit = i % 7 + 1
        agent = Agent(
            name=f"a{i}",
            tools=[lookup],
            model=scripted_model("gpt-4o", tool_loop("lookup", times=50, arguments={"q": str(i)})),
        )
        async with ab.budget(max_tool_calls=limit) as scope:
            await asyncio.sleep(random.random() / 100)
            with pytest.raises(ab.ToolCallLimitExceeded):
                await Runner.run(agent, "go")
        return limit, scope.tool_calls, scope.llm_calls

    results = await asyncio.gather(*(one(i) for i in range(100)))
    for limit, tools, llm in results:
        assert tools == limit
        assert llm == limit + 1
    assert len(calls) == sum(limit for limit, _, _ in results)


async def test_as_tool_sub_agent_loop_is_stopped_and_stops_the_whole_run() -> None:
    sub = Agent(
        name="researcher",
        tools=[lookup],
        model=scripted_model("gpt-4o-mini", tool_loop("lookup", times=500, arguments={"q": "sub"})),
    )
    top_model = scripted_model(
        "gpt-4o", [tool_call("research", {"input": "go"}), reply("never reached")]
    )
    top = Agent(name="boss", tools=[sub.as_tool("research", "Research a topic")], model=top_model)
    with pytest.raises(ab.ToolCallLimitExceeded) as info:
        async with ab.budget(max_tool_calls=10) as scope:
            await Runner.run(top, "go")
    assert scope.tool_calls == 10  # 1 as_tool call + 9 lookups inside it
    assert len(calls) == 9
    assert len(top_model.calls) == 1  # the boss never saw the sub-agent's error text
    report = info.value.report
    assert report is not None and report.agent == "boss" and report.outcome == "tripped"
    assert {c.agent for c in report.calls} == {"boss", "researcher"}
    assert report.cost_usd == scope.cost_usd


async def test_as_tool_runs_are_priced_into_the_guarded_run() -> None:
    sub = Agent(
        name="sub",
        model=scripted_model(
            "gpt-4o-mini", [reply("sub answer", input_tokens=1_000, output_tokens=100)]
        ),
    )
    top = Agent(
        name="top",
        tools=[sub.as_tool("ask", "Ask")],
        model=scripted_model(
            "gpt-4o",
            [
                tool_call("ask", {"input": "x"}, input_tokens=100, output_tokens=10),
                reply("ok", input_tokens=200, output_tokens=10),
            ],
        ),
    )
    report = ab.report_of(await ab.Guard().run(top, "go"))
    assert [c.model for c in report.calls] == ["gpt-4o", "gpt-4o-mini", "gpt-4o"]
    # 100*2.5+10*10 + 1000*0.15+100*0.6 + 200*2.5+10*10 = 350 + 210 + 600
    assert report.cost_usd == Decimal("0.001160000")


async def test_scope_cannot_be_entered_twice_and_validates_ids() -> None:
    scope = ab.budget(max_tool_calls=1)
    async with scope:
        pass
    with pytest.raises(ab.ConfigurationError):
        async with scope:
            pass
    with pytest.raises(ab.ConfigurationError):
        ab.budget(user="")
    with pytest.raises(ab.ConfigurationError):
        ab.budget(max_tool_calls=-1)


async def test_configure_sets_the_default_guard_for_scopes() -> None:
    seen: list[ab.RunReport] = []

    class Sink:
        def record(self, report: ab.RunReport) -> None:
            seen.append(report)

    guard = ab.configure(limits=ab.Limits(max_tool_calls=0), sinks=[Sink()])
    with pytest.raises(ab.ToolCallLimitExceeded):
        async with ab.budget():
            await Runner.run(tool_then_answer(), "go")
    assert await guard.aflush(timeout=10)
    assert len(seen) == 1 and seen[0].outcome == "tripped"
