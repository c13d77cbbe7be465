"""Circuit breakers: each limit stops a run at the earliest point, before it spends."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, function_tool

import agentbudget as ab
from agentbudget.testing import long_stream, reply, scripted_model, tool_call, tool_loop
from agentbudget.tokens import estimate_call_input

executions: list[str] = []


@function_tool
def step(n: str) -> str:
    """One step of work."""
    executions.append(n)
    return "ok"


@function_tool
async def sleepy() -> str:
    """A tool that hangs."""
    await asyncio.sleep(30)
    return "late"


@pytest.fixture(autouse=True)
def _reset() -> None:
    executions.clear()


def looping_agent(times: int = 1_000, **usage: int) -> Agent[Any]:
    return Agent(
        name="loop",
        tools=[step],
        model=scripted_model(
            "gpt-4o", tool_loop("step", times=times, arguments={"n": "x"}, **usage)
        ),
    )


def faithful_loop(output_tokens: int) -> Any:
    """A tool loop whose usage is what a provider would bill: the input as tiktoken counts
    it, and at most the output bound the call was sent with."""
    from agents.testing import ModelStep

    from agentbudget.tokens import tool_schema

    def respond(call: Any) -> Any:
        schemas = [tool_schema(t) for t in call.tools]
        tokens = estimate_call_input("gpt-4o", call.system_instructions, call.input, schemas)
        bound = call.model_settings.max_tokens or output_tokens
        return tool_call(
            "step", {"n": "x"}, input_tokens=tokens.tokens, output_tokens=min(output_tokens, bound)
        )

    return [ModelStep.respond(respond) for _ in range(1_000)]


# -- Limits validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tool_calls": -1},
        {"max_tokens": 1.5},
        {"max_llm_calls": "3"},
        {"max_cost_usd": float("nan")},
        {"max_cost_usd": 0.5},
        {"max_cost_usd": "-1"},
        {"max_cost_usd": "abc"},
        {"max_seconds": 0},
        {"max_seconds": float("nan")},
        {"max_seconds": -2},
        {"max_input_tokens": True},
    ],
)
def test_invalid_limits_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ab.ConfigurationError):
        ab.Limits(**kwargs)


def test_limits_parse_money_exactly() -> None:
    limits = ab.Limits(max_cost_usd="0.10", max_seconds=2)
    assert limits.max_cost_usd == Decimal("0.10") and limits.max_cost_nanos == 100_000_000
    assert limits.max_seconds == 2.0
    with pytest.raises(ab.ConfigurationError, match="unknown limit"):
        ab.Limits.from_kwargs(max_tool_call=3)


# -- tool calls ------------------------------------------------------------------------------


async def test_tool_loop_stops_at_max_tool_calls() -> None:
    agent = looping_agent()
    with pytest.raises(ab.ToolCallLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_tool_calls=4)).run(agent, "go")
    assert len(executions) == 4
    exc = info.value
    assert (exc.limit, exc.allowed, exc.observed) == ("max_tool_calls", 4, 5)
    assert exc.report is not None and exc.report.outcome == "tripped"
    assert exc.report.tool_calls == 4 and len(exc.report.calls) == 5


async def test_a_batch_that_would_pass_the_limit_runs_none_of_its_calls() -> None:
    model = scripted_model(
        "gpt-4o",
        [
            tool_call("step", {"n": "a"}, calls=2),
            tool_call("step", {"n": "b"}, calls=3),
            reply("done"),
        ],
    )
    agent = Agent(name="batch", tools=[step], model=model)
    with pytest.raises(ab.ToolCallLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_tool_calls=4)).run(agent, "go")
    assert executions == ["a", "a"]  # the batch of 3 would make 5 > 4: none of it ran
    assert info.value.observed == 5


# -- LLM calls, input tokens, total tokens, dollars --------------------------------------------


async def test_llm_call_limit_stops_before_the_call() -> None:
    agent = looping_agent()
    with pytest.raises(ab.LLMCallLimitExceeded):
        await ab.Guard(limits=ab.Limits(max_llm_calls=3)).run(agent, "go")
    assert len(agent.model.calls) == 3  # type: ignore[union-attr]


async def test_input_larger_than_max_input_tokens_is_refused_with_zero_calls() -> None:
    model = scripted_model("gpt-4o", [reply("never")])
    agent = Agent(name="big", model=model, instructions="Be brief.")
    with pytest.raises(ab.TokenLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_input_tokens=1_000)).run(agent, "word " * 2_000)
    assert model.calls == ()
    assert info.value.limit == "max_input_tokens" and info.value.observed > 1_000
    assert info.value.report is not None and info.value.report.calls == ()


def test_input_estimate_counts_instructions_items_and_tool_schemas() -> None:
    bare = estimate_call_input("gpt-4o", None, "hello world")
    with_all = estimate_call_input(
        "gpt-4o",
        "You are a careful assistant.",
        [{"role": "user", "content": "hello world"}],
        [
            {
                "name": "lookup",
                "description": "Look up an order by id",
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
            }
        ],
    )
    assert bare.tokens >= 2 + 3 and not bare.approximate
    assert with_all.tokens > bare.tokens + 15
    claude = estimate_call_input("claude-sonnet-4-5", None, "hello world " * 100)
    gpt = estimate_call_input("gpt-4o", None, "hello world " * 100)
    assert claude.approximate and claude.tokens > gpt.tokens


async def test_max_tokens_bounds_the_output_the_model_may_produce() -> None:
    model = scripted_model("gpt-4o", [reply("short", input_tokens=50, output_tokens=5)])
    agent = Agent(name="a", model=model)
    await ab.Guard(limits=ab.Limits(max_tokens=500)).run(agent, "hello")
    sent = model.calls[0]
    estimate = estimate_call_input("gpt-4o", None, sent.input).tokens
    assert sent.model_settings.max_tokens == 500 - estimate


async def test_output_cut_at_the_bound_trips_without_overshoot() -> None:
    # the model produces exactly the bound it was given: the answer is cut at the limit
    def respond(call: Any) -> Any:
        return reply("...", input_tokens=40, output_tokens=call.model_settings.max_tokens)

    from agents.testing import ModelStep

    model = scripted_model("gpt-4o", [ModelStep.respond(respond)])
    with pytest.raises(ab.TokenLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_output_tokens=120)).run(
            Agent(name="a", model=model), "hi"
        )
    assert info.value.report is not None
    assert info.value.report.output_tokens == 120  # exactly the limit, not beyond


async def test_max_tokens_never_overshoots_with_a_provider_that_honours_bounds() -> None:
    agent = Agent(
        name="loop",
        tools=[step],
        instructions="Work step by step. " * 40,
        model=scripted_model("gpt-4o", faithful_loop(output_tokens=60)),
    )
    with pytest.raises(ab.TokenLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_tokens=2_000)).run(agent, "go")
    report = info.value.report
    assert report is not None
    assert report.total_tokens <= 2_000  # never past the limit
    assert info.value.observed > 2_000  # the refused call could not have fit
    assert len(report.calls) >= 3 and len(executions) == len(report.calls)


async def test_cost_limit_refuses_before_spending() -> None:
    # each call reads ~10,000 tokens of instructions at $2.50/1M (about $0.025)
    agent = Agent(
        name="loop",
        tools=[step],
        instructions="x " * 10_000,
        model=scripted_model("gpt-4o", faithful_loop(output_tokens=100)),
    )
    with pytest.raises(ab.CostLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_cost_usd="0.10")).run(agent, "go")
    report = info.value.report
    assert report is not None
    assert report.cost_usd <= Decimal("0.10")
    assert len(report.calls) == 3  # a 4th call (>= $0.025 more) could not fit in what was left
    assert len(executions) == 3
    assert info.value.limit == "max_cost_usd" and info.value.allowed == Decimal("0.10")


async def test_backstop_after_call_when_the_model_ignores_the_bound() -> None:
    # a scripted model ignores max_tokens; the post-call check still trips
    model = scripted_model("gpt-4o", [reply("x", input_tokens=10, output_tokens=5_000)])
    with pytest.raises(ab.TokenLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_tokens=1_000)).run(Agent(name="a", model=model), "hi")
    assert info.value.observed == 5_010


# -- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("yield_every", [0, 10])
async def test_stream_under_max_output_tokens_stops_within_50_tokens(yield_every: int) -> None:
    model = scripted_model("gpt-4o", [long_stream(10_000, yield_every=yield_every)])
    streamed = ab.Guard(limits=ab.Limits(max_output_tokens=200)).run_streamed(
        Agent(name="talker", model=model), "tell me everything"
    )
    seen = 0
    with pytest.raises(ab.TokenLimitExceeded) as info:
        async for event in streamed.stream_events():
            if event.type == "raw_response_event" and event.data.type.endswith(".delta"):
                seen += 1
    report = ab.report_of(streamed)
    assert 200 <= report.output_tokens <= 250
    assert seen <= 250
    assert report.outcome == "tripped" and report.calls[0].estimated
    assert info.value.report == report


async def test_stream_cut_by_cost_limit() -> None:
    model = scripted_model("gpt-4o", [long_stream(50_000, yield_every=100)])
    streamed = ab.Guard(limits=ab.Limits(max_cost_usd="0.01")).run_streamed(
        Agent(name="talker", model=model), "hi"
    )
    with pytest.raises(ab.CostLimitExceeded):
        async for _ in streamed.stream_events():
            pass
    report = ab.report_of(streamed)
    assert Decimal("0.0099") <= report.cost_usd <= Decimal("0.0105")


# -- wall clock ------------------------------------------------------------------------------


async def test_hanging_tool_is_stopped_at_max_seconds() -> None:
    agent = Agent(
        name="w",
        tools=[sleepy],
        model=scripted_model("gpt-4o", [tool_call("sleepy"), reply("never")]),
    )
    started = time.monotonic()
    with pytest.raises(ab.TimeLimitExceeded) as info:
        await ab.Guard(limits=ab.Limits(max_seconds=0.5)).run(agent, "hi")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 0.7
    assert info.value.report is not None and info.value.report.outcome == "tripped"
    assert len(info.value.report.calls) == 1  # the spend before the stop is recorded


def test_hanging_tool_is_stopped_in_run_sync(close_sdk_loop: None) -> None:
    agent = Agent(
        name="w",
        tools=[sleepy],
        model=scripted_model("gpt-4o", [tool_call("sleepy"), reply("never")]),
    )
    started = time.monotonic()
    with pytest.raises(ab.TimeLimitExceeded):
        ab.Guard(limits=ab.Limits(max_seconds=0.5)).run_sync(agent, "hi")
    assert time.monotonic() - started < 0.7


async def test_hanging_stream_is_stopped_at_max_seconds() -> None:
    agent = Agent(
        name="w",
        tools=[sleepy],
        model=scripted_model("gpt-4o", [tool_call("sleepy"), reply("never")]),
    )
    started = time.monotonic()
    streamed = ab.Guard(limits=ab.Limits(max_seconds=0.5)).run_streamed(agent, "hi")
    with pytest.raises(ab.TimeLimitExceeded):
        async for _ in streamed.stream_events():
            pass
    assert time.monotonic() - started < 0.7
    assert ab.report_of(streamed).outcome == "tripped"


async def test_concurrent_runs_share_one_timer_and_each_stops_at_its_own_deadline() -> None:
    """The runs of one loop share one watchdog timer: a run with an earlier deadline that
    starts after a later one still stops on time, the later one stops at its own, and
    no run is left in the loop's table once it ended."""
    from agentbudget import pipeline

    def hanging() -> Agent[Any]:
        return Agent(
            name="w",
            tools=[sleepy],
            model=scripted_model("gpt-4o", [tool_call("sleepy"), reply("never")]),
        )

    async def timed(max_seconds: float) -> float:
        started = time.monotonic()
        with pytest.raises(ab.TimeLimitExceeded):
            await ab.Guard(limits=ab.Limits(max_seconds=max_seconds)).run(hanging(), "hi")
        return time.monotonic() - started

    quick = ab.Guard(limits=ab.Limits(max_seconds=60))
    await quick.run(Agent(name="q", model=scripted_model("gpt-4o", [reply("ok")])), "hi")
    late = asyncio.ensure_future(timed(0.9))  # the timer is armed for the 60 s run first
    await asyncio.sleep(0.05)
    early = await timed(0.3)
    assert 0.3 <= early < 0.5
    assert 0.9 <= await late < 1.1
    deadlines = pipeline._LOOP_DEADLINES[asyncio.get_running_loop()]
    assert deadlines.runs == {}  # ended runs (tripped or completed) hold nothing


async def test_retries_do_not_bypass_a_trip() -> None:
    from agents import ModelSettings
    from agents.retry import ModelRetrySettings, retry_policies

    agent = looping_agent()
    agent.model_settings = ModelSettings(
        retry=ModelRetrySettings(max_retries=3, policy=retry_policies.any())
    )
    with pytest.raises(ab.ToolCallLimitExceeded):
        await ab.Guard(limits=ab.Limits(max_tool_calls=1)).run(agent, "go")
    assert len(executions) == 1
