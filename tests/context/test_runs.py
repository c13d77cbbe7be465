"""``ContextBudget`` on the real path: the SDK's ``OpenAIResponsesModel`` and
``OpenAIChatCompletionsModel`` over the fake OpenAI server, through every entry point."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from agents.run_config import CallModelData, ModelInputData
from helpers.context_history import INSTRUCTIONS, bulky, estimate, history, unpaired
from helpers.fake_openai import FakeOpenAI, Turn

import agentbudget as ab
from agentbudget.pricing import PriceTable, TokenUsage

APIS = ["responses", "chat"]
PRICES = PriceTable.default()
HISTORY = history(200)
QUESTION = {"role": "user", "content": "And what about the latest results?"}


@function_tool
def search(query: str) -> str:
    """Search the corpus."""
    return bulky(len(query))


def make_agent(server: FakeOpenAI, api: str, **kwargs: Any) -> Agent[Any]:
    settings = ModelSettings(include_usage=True) if api == "chat" else ModelSettings()
    return Agent(
        name="researcher",
        instructions=INSTRUCTIONS,
        model=server.model(api),
        tools=[search],
        model_settings=settings,
        **kwargs,
    )


def script() -> list[Turn]:
    return [
        Turn(tool="search", arguments='{"query": "first"}'),
        Turn(tool="search", arguments='{"query": "second one"}'),
        Turn(output_tokens=30),
    ]


def check_chat_pairs(messages: list[dict[str, Any]]) -> None:
    """Every tool message answers an earlier assistant tool call, and every call is answered."""
    open_calls: set[str] = set()
    answered: set[str] = set()
    for message in messages:
        for call in message.get("tool_calls") or []:
            open_calls.add(call["id"])
        if message.get("role") == "tool":
            assert message["tool_call_id"] in open_calls, message["tool_call_id"]
            answered.add(message["tool_call_id"])
    assert open_calls == answered


def check_sent(server: FakeOpenAI, api: str, agent: Agent[Any], limit: int) -> None:
    """What the model received: within the budget, the latest question there, pairs intact."""
    assert len(server.requests) == 3
    for body in server.requests:
        if api == "responses":
            items = body["input"]
            assert unpaired(items) == []
            assert estimate("gpt-4o", body["instructions"], items, agent) <= limit
            assert {"role": "user", "content": QUESTION["content"]} in items
        else:
            messages = body["messages"]
            check_chat_pairs(messages)
            assert messages[0] == {"role": "system", "content": INSTRUCTIONS}
            assert any(m.get("content") == QUESTION["content"] for m in messages)
            assert len(messages) < 100


class Recorder:
    """A user filter that records the input the SDK built (it runs before the budget)."""

    def __init__(self) -> None:
        self.inputs: list[list[Any]] = []

    def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        self.inputs.append(list(data.model_data.input))
        return data.model_data


def expected_savings(
    budget: ab.ContextBudget, agent: Agent[Any], inputs: list[list[Any]]
) -> list[int]:
    """The breakers' estimate of each full input minus that of what the budget keeps."""
    saved = []
    for items in inputs:
        kept = budget.fit(
            items, INSTRUCTIONS, overhead_tokens=budget.overhead_tokens(agent, "gpt-4o")
        ).input
        saved.append(
            estimate("gpt-4o", INSTRUCTIONS, items, agent)
            - estimate("gpt-4o", INSTRUCTIONS, kept, agent)
        )
    return saved


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_a_200_turn_history_is_sent_within_4000_tokens_and_reported(
    api: str, streamed: bool
) -> None:
    server = FakeOpenAI(script(), input_tokens=3_900)
    agent = make_agent(server, api)
    budget = ab.ContextBudget(4_000, keep_recent_turns=2, trim_tool_outputs_over=500)
    recorder = Recorder()
    guard = ab.Guard(context=budget)
    run_config = RunConfig(call_model_input_filter=recorder)
    if streamed:
        result: Any = guard.run_streamed(agent, [*HISTORY, QUESTION], run_config=run_config)
        async for _ in result.stream_events():
            pass
    else:
        result = await guard.run(agent, [*HISTORY, QUESTION], run_config=run_config)
    check_sent(server, api, agent, 4_000)
    report = ab.report_of(result)
    saved = expected_savings(budget, agent, recorder.inputs)
    assert [c.context_saved_tokens for c in report.calls] == saved
    assert min(saved) > 150_000  # 200 turns of ~880 tokens down to under 4,000
    assert report.context_saved_tokens == sum(saved)
    assert [c.context_saved_usd for c in report.calls] == [
        PRICES.cost("gpt-4o", TokenUsage(input_tokens=s)) for s in saved
    ]
    assert report.context_saved_usd == sum(c.context_saved_usd for c in report.calls)
    assert report.tool_calls == 2 and report.outcome == "completed"
    assert result.final_output  # the run completed normally
    assert run_config.call_model_input_filter is recorder  # the user's RunConfig is untouched


@pytest.mark.parametrize("api", APIS)
async def test_inside_a_budget_scope(api: str) -> None:
    server = FakeOpenAI(script(), input_tokens=3_000)
    agent = make_agent(server, api)
    async with ab.budget(context=ab.ContextBudget(4_000), max_llm_calls=5) as scope:
        result = await Runner.run(agent, [*HISTORY, QUESTION])
    check_sent(server, api, agent, 4_000)
    assert scope.reports[0].context_saved_tokens > 450_000
    assert ab.report_of(result).context_saved_tokens == scope.reports[0].context_saved_tokens


@pytest.mark.parametrize("api", APIS)
async def test_alone_in_a_run_config(api: str) -> None:
    server = FakeOpenAI(script(), input_tokens=3_000)
    agent = make_agent(server, api)
    run_config = RunConfig(call_model_input_filter=ab.ContextBudget(4_000))
    result = await Runner.run(agent, [*HISTORY, QUESTION], run_config=run_config)
    check_sent(server, api, agent, 4_000)
    assert result.final_output
    with pytest.raises(LookupError):  # not governed: no report, nothing else changed
        ab.report_of(result)


async def test_configure_makes_it_the_default_guards_stage() -> None:
    server = FakeOpenAI(script(), input_tokens=3_000)
    agent = make_agent(server, "responses")
    ab.configure(context=ab.ContextBudget(4_000))
    async with ab.budget() as scope:
        await Runner.run(agent, [*HISTORY, QUESTION])
    check_sent(server, "responses", agent, 4_000)
    assert scope.reports[0].context_saved_tokens > 450_000


@pytest.mark.parametrize("api", APIS)
async def test_an_impossible_budget_stops_the_run_before_any_call(api: str) -> None:
    server = FakeOpenAI(script())
    agent = make_agent(server, api)
    guard = ab.Guard(context=ab.ContextBudget(200))
    with pytest.raises(ab.TokenLimitExceeded) as caught:
        await guard.run(agent, [*HISTORY, QUESTION])
    assert server.requests == []
    report = caught.value.report
    assert report is not None
    assert (report.outcome, report.tripped_limit, report.calls) == (
        "tripped",
        "context.max_input_tokens",
        (),
    )


async def test_no_pressure_no_change() -> None:
    server = FakeOpenAI(script(), input_tokens=500)
    agent = make_agent(server, "responses")
    bare = FakeOpenAI(script(), input_tokens=500)
    await Runner.run(make_agent(bare, "responses"), history(2))
    result = await ab.Guard(context=ab.ContextBudget(100_000)).run(agent, history(2))
    assert [r["input"] for r in server.requests] == [r["input"] for r in bare.requests]
    assert ab.report_of(result).context_saved_tokens == 0


# -- provider prompt caching, made visible ---------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_cached_input_tokens_ratio_and_savings_are_reported(api: str) -> None:
    server = FakeOpenAI(
        [Turn(tool="search", cached_tokens=0), Turn(output_tokens=10, cached_tokens=1_536)],
        input_tokens=2_000,
    )
    result = await ab.Guard().run(make_agent(server, api), "Search something.")
    report = ab.report_of(result)
    first, second = report.calls
    assert (first.cached_input_tokens, first.cache_hit_ratio, first.cache_saved_usd) == (
        0,
        0.0,
        Decimal(0),
    )
    assert second.cache_hit_ratio == 1_536 / 2_000
    uncached = PRICES.cost("gpt-4o", TokenUsage(input_tokens=2_000, output_tokens=10))
    assert second.cache_saved_usd == uncached - second.cost_usd > 0
    assert report.cached_input_tokens == 1_536
    assert report.cache_hit_ratio == 1_536 / 4_000
    assert report.cache_saved_usd == second.cache_saved_usd
    again = ab.RunReport.model_validate_json(report.model_dump_json())
    assert again == report  # the new fields round-trip
