"""``AnthropicModel`` governed: the real ``anthropic`` client over ``FakeAnthropic``.

Every test drives the model through the SDK's run loop, JSON and SSE, and checks what
was sent and what was charged against what the server billed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, function_tool
from helpers.fake_anthropic import FakeAnthropic, Turn

import agentbudget as ab
from agentbudget.pricing import PriceTable

PRICES = PriceTable.default()
PROMPT = "Tell me everything."


def billed_cost(model: str, usage: dict[str, Any]) -> Decimal:
    return PRICES.cost(model, ab.TokenUsage.from_anthropic(usage))


async def run(agent_: Agent[Any], streamed: bool, prompt: str = PROMPT, **guard: Any) -> Any:
    user = guard.pop("user", None)
    run_config = guard.pop("run_config", None)
    g = ab.Guard(**guard)
    if not streamed:
        return await g.run(agent_, prompt, user=user, run_config=run_config)
    result = g.run_streamed(agent_, prompt, user=user, run_config=run_config)
    async for _ in result.stream_events():
        pass
    return result


@pytest.fixture(params=[False, True], ids=["json", "sse"])
def streamed(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_plain_answer_is_priced_at_the_servers_usage(streamed: bool) -> None:
    server = FakeAnthropic([Turn(output_tokens=120)], input_tokens=5_000)
    agent = Agent(name="assistant", instructions="Be brief.", model=server.model())
    result = await run(agent, streamed)
    assert result.final_output == "word" + " word" * 119
    (call,) = ab.report_of(result).calls
    assert (call.model, call.input_tokens, call.output_tokens, call.estimated) == (
        "claude-sonnet-4-5",
        5_000,
        120,
        False,
    )
    assert call.cost_usd == Decimal(5_000 * 3 + 120 * 15) / 10**6
    (body,) = server.requests
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    assert body["max_tokens"] == 8_192  # nothing limited: the model's default bound


# -- the acceptance figure: cache reads and both write lifetimes, priced exactly ---------


async def test_cache_reads_and_writes_are_priced_exactly_through_a_governed_run(
    streamed: bool,
) -> None:
    turn = Turn(
        output_tokens=500,
        input_tokens=2_000,
        cache_read=10_000,
        cache_write_5m=3_000,
        cache_write_1h=1_000,
    )
    server = FakeAnthropic([turn])
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", usd="5")])
    result = await run(
        Agent(name="assistant", model=server.model()), streamed, budgets=budgets, user="u"
    )
    report = ab.report_of(result)
    (call,) = report.calls
    # Anthropic's input_tokens (2,000) excludes the cache; agentbudget's includes it
    assert (call.input_tokens, call.cached_input_tokens, call.cache_write_tokens) == (
        16_000,
        10_000,
        4_000,
    )
    assert call.output_tokens == 500 and not call.estimated
    # $3/M x 2,000 + $0.30/M x 10,000 + $3.75/M x 3,000 + $6/M x 1,000 + $15/M x 500
    assert report.cost_usd == Decimal("0.033750")
    (row,) = await budgets.spend(user="u")
    assert (row.unit, row.spent, row.reserved) == ("nanousd", 33_750_000, 0)
    # the SDK's own usage of the run keeps the same buckets
    usage = result.context_wrapper.usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (16_000, 10_000)
    assert usage.input_tokens_details.cache_write_tokens == 4_000


def test_the_long_context_tier_is_decided_on_the_total_input_anthropic_bills() -> None:
    # 60,000 uncached + 150,000 read: 210,000 input tokens, above sonnet-4-5's 200k tier,
    # although Anthropic's own input_tokens (60,000) is far below it
    usage = ab.TokenUsage.from_anthropic(
        {"input_tokens": 60_000, "cache_read_input_tokens": 150_000, "output_tokens": 1_000}
    )
    assert usage.input_tokens == 210_000
    # tier rates: $6/M input, $0.60/M cached, $22.50/M output
    assert PRICES.cost("claude-sonnet-4-5", usage) == Decimal("0.36") + Decimal("0.09") + Decimal(
        "0.0225"
    )


def test_usage_shapes_map_without_double_counting() -> None:
    # a split that is missing: every write is a 5-minute write
    usage = ab.TokenUsage.from_anthropic(
        {"input_tokens": 10, "cache_creation_input_tokens": 90, "output_tokens": 1}
    )
    assert (usage.input_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        100,
        90,
        0,
    )
    # nulls count as 0; thinking is part of the output
    usage = ab.TokenUsage.from_anthropic(
        {
            "input_tokens": 5,
            "cache_read_input_tokens": None,
            "output_tokens": 40,
            "output_tokens_details": {"thinking_tokens": 30},
        }
    )
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (5, 40, 30)
    # the agents.Usage mapping reads back unchanged
    usage = ab.TokenUsage.from_anthropic(
        {
            "input_tokens": 1,
            "cache_read_input_tokens": 2,
            "cache_creation_input_tokens": 7,
            "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4},
            "output_tokens": 5,
        }
    )
    assert ab.TokenUsage.from_agents_usage(usage.to_agents_usage()) == usage


# -- tools ------------------------------------------------------------------------------


async def test_tool_round_trip_charges_both_calls(streamed: bool) -> None:
    ran: list[str] = []

    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        ran.append(q)
        return "found it"

    server = FakeAnthropic(
        [Turn(tools=[("lookup", {"q": "refunds"})]), Turn(output_tokens=30)], input_tokens=800
    )
    agent = Agent(name="assistant", model=server.model(), tools=[lookup])
    result = await run(agent, streamed, limits=ab.Limits(max_tool_calls=3))
    report = ab.report_of(result)
    assert ran == ["refunds"] and report.tool_calls == 1
    assert report.cost_usd == sum(
        (billed_cost("claude-sonnet-4-5", usage) for usage in server.billed), Decimal(0)
    )
    first, second = server.requests
    assert first["tools"][0]["name"] == "lookup"
    assert first["tools"][0]["input_schema"]["properties"]["q"]["type"] == "string"
    assistant, results = second["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "refunds"}}
        ],
    }
    assert results == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "found it"}],
    }


async def test_parallel_tool_calls_answer_in_one_user_turn(streamed: bool) -> None:
    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"about {q}"

    server = FakeAnthropic(
        [Turn(tools=[("lookup", {"q": "a"}), ("lookup", {"q": "b"})]), Turn(output_tokens=5)]
    )
    agent = Agent(name="assistant", model=server.model(), tools=[lookup])
    result = await run(agent, streamed)
    assert ab.report_of(result).tool_calls == 2
    results = server.requests[1]["messages"][-1]
    assert results["role"] == "user"
    assert [(b["tool_use_id"], b["content"]) for b in results["content"]] == [
        ("toolu_1", "about a"),
        ("toolu_2", "about b"),
    ]


async def test_a_handoff_is_a_tool_and_switches_agents(streamed: bool) -> None:
    server = FakeAnthropic(
        [Turn(tools=[("transfer_to_billing", {})]), Turn(output_tokens=7)], input_tokens=100
    )
    billing = Agent(name="billing", model=server.model())
    triage = Agent(name="triage", model=server.model(), handoffs=[billing])
    result = await run(triage, streamed)
    assert result.last_agent.name == "billing"
    assert server.requests[0]["tools"][0]["name"] == "transfer_to_billing"
    report = ab.report_of(result)
    assert [c.agent for c in report.calls] == ["triage", "billing"] and report.tool_calls == 0


async def test_thinking_streams_and_is_replayed_with_its_signature() -> None:
    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        return "found"

    server = FakeAnthropic(
        [Turn(thinking_tokens=40, tools=[("lookup", {"q": "x"})]), Turn(output_tokens=3)]
    )
    agent = Agent(name="assistant", model=server.model(thinking_budget=2_048), tools=[lookup])
    result = ab.Guard().run_streamed(agent, PROMPT)
    kinds: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event":
            kinds.append(event.data.type)
    assert "response.reasoning_text.delta" in kinds
    assert "response.function_call_arguments.delta" in kinds
    assert kinds.count("response.completed") == 2
    first, second = server.requests
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2_048}
    replayed = second["messages"][1]["content"]
    assert replayed[0]["type"] == "thinking" and replayed[0]["signature"] == "sig-abc"
    assert replayed[1]["type"] == "tool_use"
    (first_call, _) = ab.report_of(result).calls
    assert first_call.output_tokens == 50  # 40 thinking + 10 for the tool call, as billed


async def test_text_before_a_tool_call_streams_in_order_and_is_replayed() -> None:
    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        return "found"

    server = FakeAnthropic(
        [Turn(text="Let me check.", tools=[("lookup", {"q": "x"})]), Turn(output_tokens=2)]
    )
    agent = Agent(name="assistant", model=server.model(), tools=[lookup])
    result = ab.Guard().run_streamed(agent, PROMPT)
    added: list[tuple[int, str]] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_item.added":
            added.append((event.data.output_index, event.data.item.type))
    assert added[:2] == [(0, "message"), (1, "function_call")]
    assistant = server.requests[1]["messages"][1]
    assert [block["type"] for block in assistant["content"]] == ["text", "tool_use"]
    assert assistant["content"][0]["text"] == "Let me check."


def test_input_items_become_messages_api_turns() -> None:
    model = FakeAnthropic().model()
    system, turns = model.messages(
        "Be brief.",
        [
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
            {"role": "user", "content": "And then?"},
        ],
    )
    assert [block["text"] for block in system] == ["Be brief.", "Answer in French."]
    user, assistant, results = turns
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert [b["input"] for b in assistant["content"]] == [{"a": 1}, {}]
    # both tool results, then the next user text, in one user turn (results first)
    assert [b["type"] for b in results["content"]] == ["tool_result", "tool_result", "text"]
