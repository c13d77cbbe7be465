"""Server-side compaction (``OpenAIResponsesCompactionSession``) is metered and priced like
any other LLM call of the run."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession
from agents.memory.openai_responses_compaction_session import OpenAIResponsesCompactionSession
from helpers.fake_openai import FakeOpenAI, Turn

import agentbudget as ab
from agentbudget.pricing import PriceTable, TokenUsage


def compacting(server: FakeOpenAI) -> OpenAIResponsesCompactionSession:
    return OpenAIResponsesCompactionSession(
        "conversation-1",
        SQLiteSession("conversation-1"),
        client=server.client(),
        model="gpt-4.1",
        compaction_mode="input",
        should_trigger_compaction=lambda context: True,  # compact after every turn
    )


def agent(server: FakeOpenAI) -> Agent[Any]:
    return Agent(name="support", model=server.model("responses"))


async def test_a_compaction_call_is_charged_priced_and_reported() -> None:
    server = FakeOpenAI([Turn(output_tokens=20)], input_tokens=1_000)
    server.compact_output_tokens = 300
    result = await ab.Guard().run(agent(server), "Where is my order?", session=compacting(server))
    assert len(server.compacted) == 1 and server.compacted[0]["model"] == "gpt-4.1"
    report = ab.report_of(result)
    answer, compaction = report.calls
    assert (answer.agent, compaction.agent) == ("support", "compaction")
    assert (compaction.model, compaction.input_tokens, compaction.output_tokens) == (
        "gpt-4.1",
        1_000,
        300,
    )
    expected = PriceTable.default().cost(
        "gpt-4.1", TokenUsage(input_tokens=1_000, output_tokens=300)
    )
    assert compaction.cost_usd == expected and not compaction.estimated
    assert report.cost_usd == answer.cost_usd + expected  # type: ignore[operator]


async def test_a_compaction_call_is_stopped_by_the_runs_limits_before_it_is_sent() -> None:
    server = FakeOpenAI([Turn()])
    guard = ab.Guard(limits=ab.Limits(max_llm_calls=1))
    with pytest.raises(ab.LLMCallLimitExceeded) as caught:
        await guard.run(agent(server), "Where is my order?", session=compacting(server))
    assert server.compacted == []  # refused before the request
    assert caught.value.report is not None and len(caught.value.report.calls) == 1


async def test_a_compaction_call_is_charged_to_the_budgets() -> None:
    server = FakeOpenAI([Turn(output_tokens=20)], input_tokens=1_000)
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", usd="1")])
    guard = ab.Guard(budgets=budgets)
    result = await guard.run(
        agent(server), "Where is my order?", user="u-1", session=compacting(server)
    )
    await budgets.drain()
    [row] = await budgets.spend(user="u-1")
    cost = ab.report_of(result).cost_usd
    assert cost is not None and row.unit == "nanousd"
    assert row.spent == int(cost * 10**9)  # the answer and the compaction
    await budgets.close()


async def test_an_ungoverned_run_compacts_untouched() -> None:
    server = FakeOpenAI([Turn()])
    session = compacting(server)
    await Runner.run(agent(server), "Where is my order?", session=session)
    assert len(server.compacted) == 1
    assert type(session.client).__name__ == "AsyncOpenAI"  # not wrapped outside a run


def test_the_sdk_internal_is_present() -> None:
    from agentbudget import _sdk

    assert [name for name, present in _sdk.optional_internals() if not present] == []
