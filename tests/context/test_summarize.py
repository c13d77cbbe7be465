"""``summarize=``: dropped turns become one summary message, made by a cheap agent whose
calls are part of the run (charged, limited, reported) and cached per dropped prefix."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent
from helpers.context_history import INSTRUCTIONS, estimate, history
from helpers.fake_openai import FakeOpenAI, Turn

import agentbudget as ab
from agentbudget.context import SUMMARY_PREFIX

QUESTION = {"role": "user", "content": "And now?"}


def agents() -> tuple[FakeOpenAI, FakeOpenAI, Agent[Any], ab.ContextBudget]:
    main = FakeOpenAI([Turn(output_tokens=12)], input_tokens=3_000)
    cheap = FakeOpenAI([Turn(output_tokens=40)], input_tokens=9_000)
    summarizer = Agent(name="summarizer", model=cheap.model("responses", "gpt-4o-mini"))
    agent = Agent(name="researcher", instructions=INSTRUCTIONS, model=main.model("responses"))
    budget = ab.ContextBudget(4_000, trim_tool_outputs_over=None, summarize=summarizer)
    return main, cheap, agent, budget


async def test_dropped_turns_are_replaced_by_a_summary_charged_to_the_run() -> None:
    main, cheap, agent, budget = agents()
    result = await ab.Guard(context=budget).run(agent, [*history(30), QUESTION])
    (body,) = main.requests
    summaries = [i for i in body["input"] if str(i.get("content", "")).startswith(SUMMARY_PREFIX)]
    assert len(summaries) == 1 and summaries[0]["role"] == "developer"
    assert body["input"][0] is not None and body["input"].index(summaries[0]) == 0
    assert estimate("gpt-4o", INSTRUCTIONS, body["input"]) <= 4_000
    (asked,) = cheap.requests
    assert "Question 0: what about 0?" in str(asked["input"])  # the dropped turns
    report = ab.report_of(result)
    assert [c.agent for c in report.calls] == ["summarizer", "researcher"]
    assert report.calls[0].model == "gpt-4o-mini" and report.calls[0].input_tokens == 9_000
    assert report.cost_usd == sum(c.cost_usd for c in report.calls if c.cost_usd)
    assert report.context_saved_tokens > 20_000


async def test_the_same_prefix_is_summarised_once() -> None:
    main, cheap, agent, budget = agents()
    guard = ab.Guard(context=budget)
    await guard.run(agent, [*history(30), QUESTION])
    second = await guard.run(agent, [*history(30), QUESTION])
    assert len(cheap.requests) == 1 and len(main.requests) == 2
    assert [c.agent for c in ab.report_of(second).calls] == ["researcher"]
    assert main.requests[0]["input"] == main.requests[1]["input"]


async def test_the_summary_counts_against_the_runs_limits() -> None:
    main, cheap, agent, budget = agents()
    guard = ab.Guard(context=budget, limits=ab.Limits(max_llm_calls=1))
    with pytest.raises(ab.LLMCallLimitExceeded) as caught:
        await guard.run(agent, [*history(30), QUESTION])
    assert len(cheap.requests) == 1 and main.requests == []
    assert caught.value.report is not None
    assert [c.agent for c in caught.value.report.calls] == ["summarizer"]


async def test_saved_tokens_count_the_summary_against_the_savings() -> None:
    main, _cheap, agent, budget = agents()
    items = [*history(30), QUESTION]
    result = await ab.Guard(context=budget).run(agent, items)
    (body,) = main.requests
    sent = [{k: v for k, v in i.items() if k != "id"} for i in body["input"]]
    saved = estimate("gpt-4o", INSTRUCTIONS, items) - estimate("gpt-4o", INSTRUCTIONS, sent)
    assert ab.report_of(result).calls[1].context_saved_tokens == saved


async def test_a_summary_too_long_to_fit_is_left_out() -> None:
    main = FakeOpenAI([Turn(output_tokens=12)], input_tokens=3_000)
    cheap = FakeOpenAI([Turn(output_tokens=5_000)])
    summarizer = Agent(name="summarizer", model=cheap.model("responses", "gpt-4o-mini"))
    agent = Agent(name="researcher", instructions=INSTRUCTIONS, model=main.model("responses"))
    budget = ab.ContextBudget(4_000, trim_tool_outputs_over=None, summarize=summarizer)
    result = await ab.Guard(context=budget).run(agent, [*history(30), QUESTION])
    (body,) = main.requests
    assert not any(str(i.get("content", "")).startswith(SUMMARY_PREFIX) for i in body["input"])
    assert estimate("gpt-4o", INSTRUCTIONS, body["input"]) <= 4_000
    assert [c.agent for c in ab.report_of(result).calls] == ["summarizer", "researcher"]
