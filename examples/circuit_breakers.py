"""Circuit breakers: a runaway tool loop, a long stream and a slow tool, each stopped.

Offline by default (scripted models, real accounting). With OPENAI_API_KEY set, the same
agents run on gpt-4o-mini.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agents import Agent, Model, function_tool, set_tracing_disabled

import agentbudget as ab
from agentbudget.testing import long_stream, reply, scripted_model, tool_call, tool_loop

LIVE = bool(os.environ.get("OPENAI_API_KEY"))


def model(script: list[Any]) -> str | Model:
    return "gpt-4o-mini" if LIVE else scripted_model("gpt-4o-mini", script)


@function_tool
def search(query: str) -> str:
    """Search the knowledge base. Always returns that more searching is needed."""
    return f"No definitive answer for {query!r}; try searching again with other words."


@function_tool
async def slow_report() -> str:
    """Build a report (slow)."""
    await asyncio.sleep(30)
    return "report"


async def runaway_loop() -> ab.RunReport:
    agent = Agent(
        name="researcher",
        instructions="Use search until you are certain.",
        tools=[search],
        model=model(tool_loop("search", times=100, arguments={"query": "refund policy"})),
    )
    guard = ab.Guard(limits=ab.Limits(max_tool_calls=3, max_cost_usd="0.05"))
    try:
        await guard.run(agent, "What is the refund policy?")
    except ab.AgentBudgetExceeded as exc:
        print(f"loop stopped: {exc}")
        assert exc.report is not None
        return exc.report
    raise AssertionError("the loop was not stopped")


async def long_answer() -> ab.RunReport:
    agent = Agent(
        name="writer",
        instructions="Write at length.",
        model=model([long_stream(5_000, yield_every=25)]),
    )
    streamed = ab.Guard(limits=ab.Limits(max_output_tokens=100)).run_streamed(
        agent, "Write a 5,000 word essay about budgets."
    )
    try:
        async for _ in streamed.stream_events():
            pass
    except ab.TokenLimitExceeded as exc:
        print(f"stream stopped: {exc}")
    return ab.report_of(streamed)


async def slow_tool() -> ab.RunReport:
    agent = Agent(
        name="reporter", tools=[slow_report], model=model([tool_call("slow_report"), reply("done")])
    )
    try:
        await ab.Guard(limits=ab.Limits(max_seconds=1)).run(agent, "Build the report.")
    except ab.TimeLimitExceeded as exc:
        print(f"slow tool stopped: {exc}")
        assert exc.report is not None
        return exc.report
    raise AssertionError("the slow tool was not stopped")


async def main() -> list[ab.RunReport]:
    if not LIVE:
        set_tracing_disabled(True)
    reports = [await runaway_loop(), await long_answer(), await slow_tool()]
    for report in reports:
        print(
            f"  {report.agent}: {report.outcome} ({report.tripped_limit}), "
            f"${report.cost_usd}, {report.total_tokens} tokens, {report.tool_calls} tools"
        )
    return reports


if __name__ == "__main__":
    asyncio.run(main())
