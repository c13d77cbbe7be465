"""Every limit and budget on ``AnthropicModel``, and Anthropic's errors and retries.

The bound agentbudget sends is Anthropic's required ``max_tokens``; a response cut there
(``stop_reason="max_tokens"``) is charged at the server's usage and trips, as on the
OpenAI classes (tests/conformance).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anthropic
import pytest
from agents import (
    Agent,
    ModelBehaviorError,
    ModelRetrySettings,
    ModelSettings,
    RunConfig,
    function_tool,
    retry_policies,
)
from helpers.fake_anthropic import FakeAnthropic, Turn, billed_tokens, text_of

import agentbudget as ab
from agentbudget.models import AnthropicModel, AnthropicProvider
from agentbudget.pricing import PriceTable
from agentbudget.tokens import estimate_call_input

PRICES = PriceTable.default()
PROMPT = "Tell me everything."


def estimate(prompt: str = PROMPT, model: str = "claude-sonnet-4-5") -> int:
    return estimate_call_input(model, None, [{"role": "user", "content": prompt}]).tokens


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


# -- limits -----------------------------------------------------------------------------


async def test_max_output_tokens_is_sent_as_max_tokens_and_a_cut_trips(streamed: bool) -> None:
    server = FakeAnthropic([Turn(output_tokens=2_000)], input_tokens=5_000)
    agent = Agent(name="assistant", model=server.model())
    with pytest.raises(ab.TokenLimitExceeded) as caught:
        await run(agent, streamed, limits=ab.Limits(max_output_tokens=100))
    assert server.requests[0]["max_tokens"] == 100
    report = caught.value.report
    assert report is not None and report.outcome == "tripped"
    (call,) = report.calls
    assert (call.input_tokens, call.output_tokens, call.estimated) == (5_000, 100, False)
    assert report.cost_usd == Decimal("0.0165")  # 5,000 x $3/M + 100 x $15/M


async def test_max_cost_lowers_the_bound_and_stops_at_or_under_the_limit(streamed: bool) -> None:
    prompt = text_of(4_000)
    server = FakeAnthropic([Turn(output_tokens=10_000)], input_tokens=estimate(prompt))
    agent = Agent(name="assistant", model=server.model())
    with pytest.raises(ab.CostLimitExceeded) as caught:
        await run(agent, streamed, prompt, limits=ab.Limits(max_cost_usd="0.05"))
    report = caught.value.report
    assert report is not None
    (call,) = report.calls
    sent = server.requests[0]["max_tokens"]
    assert 100 < sent < 8_192 and call.output_tokens == sent
    assert call.input_tokens == server.input_tokens and not call.estimated
    assert report.cost_usd == Decimal(server.input_tokens * 3 + sent * 15) / 10**6
    assert report.cost_usd <= Decimal("0.05")


async def test_max_tool_calls_stops_a_batch_before_it_runs(streamed: bool) -> None:
    ran: list[str] = []

    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        ran.append(q)
        return "x"

    server = FakeAnthropic([Turn(tools=[("lookup", {"q": "a"}), ("lookup", {"q": "b"})])])
    agent = Agent(name="assistant", model=server.model(), tools=[lookup])
    with pytest.raises(ab.ToolCallLimitExceeded) as caught:
        await run(agent, streamed, limits=ab.Limits(max_tool_calls=1))
    assert ran == []
    report = caught.value.report
    assert report is not None and len(report.calls) == 1 and report.cost_usd is not None


async def test_a_budget_lowered_bound_cut_raises_budget_exhausted(streamed: bool) -> None:
    server = FakeAnthropic([Turn(output_tokens=5_000)], input_tokens=estimate())
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=1_000)])
    agent = Agent(name="assistant", model=server.model())
    with pytest.raises(ab.BudgetExhausted) as caught:
        await run(agent, streamed, budgets=budgets, user="u")
    assert server.requests[0]["max_tokens"] < 1_000
    report = caught.value.report
    assert report is not None and report.calls[0].input_tokens == server.input_tokens
    (row,) = await budgets.spend(user="u")
    assert row.spent == billed_tokens(server) <= 1_000 and row.reserved == 0


async def test_downgrade_to_another_claude_through_the_provider(streamed: bool) -> None:
    prompt = text_of(8_000)
    server = FakeAnthropic([Turn(output_tokens=20)], input_tokens=estimate(prompt))
    provider = AnthropicProvider(server.client())
    # ~9,600 input tokens held at sonnet's highest input rate ($6/M, a 1-hour write) are
    # more than $0.055 on their own: the call cannot fit on sonnet, it fits on haiku
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", usd="0.055")],
        on_exhausted=[ab.Downgrade("anthropic/claude-haiku-4-5")],
    )
    agent = Agent(name="assistant", model="anthropic/claude-sonnet-4-5")
    result = await run(
        agent,
        streamed,
        prompt,
        budgets=budgets,
        user="u",
        run_config=RunConfig(model_provider=provider),
    )
    (body,) = server.requests
    assert body["model"] == "claude-haiku-4-5"
    (call,) = ab.report_of(result).calls
    assert call.degraded == "downgrade" and call.price_key == "claude-haiku-4-5"
    # $1/M input, $5/M output on haiku-4-5
    assert call.cost_usd == Decimal(server.input_tokens * 1 + 20 * 5) / 10**6


async def test_an_answer_cut_inside_its_thinking_is_charged_then_the_sdk_error(
    streamed: bool,
) -> None:
    server = FakeAnthropic([Turn(thinking_tokens=3_000)], input_tokens=1_000)
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=1_000_000)])
    agent = Agent(name="assistant", model=server.model(max_tokens=3_000, thinking_budget=2_048))
    with pytest.raises(ModelBehaviorError):
        await run(agent, streamed, budgets=budgets, user="u")
    (row,) = await budgets.spend(user="u")
    assert (row.spent, row.reserved) == (4_000, 0)  # the server's 1,000 in + 3,000 out


async def test_a_lowered_bound_shrinks_the_thinking_budget_under_it() -> None:
    server = FakeAnthropic([Turn(output_tokens=10), Turn(output_tokens=10)])
    agent = Agent(name="assistant", model=server.model(thinking_budget=4_000))
    await run(agent, False, limits=ab.Limits(max_output_tokens=2_000))
    assert server.requests[0]["thinking"] == {"type": "enabled", "budget_tokens": 1_999}
    agent = Agent(name="assistant", model=server.model(thinking_budget=4_000))
    await run(agent, False, limits=ab.Limits(max_output_tokens=500))
    assert "thinking" not in server.requests[1]  # under 1,024: off for this call


# -- errors and retries -----------------------------------------------------------------


async def test_the_clients_retries_ride_out_429_and_529(streamed: bool) -> None:
    server = FakeAnthropic([Turn(error=429), Turn(error=529), Turn(output_tokens=12)])
    agent = Agent(name="assistant", model=server.model(max_retries=2))
    result = await run(agent, streamed)
    assert len(server.requests) == 3 and result.final_output == text_of(12)
    (call,) = ab.report_of(result).calls
    assert (call.input_tokens, call.output_tokens) == (1_000, 12)


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, anthropic.RateLimitError), (529, anthropic.OverloadedError)],
)
async def test_errors_surface_as_the_anthropic_errors_and_advise_a_retry(
    status: int, error: type[Exception], streamed: bool
) -> None:
    server = FakeAnthropic([Turn(error=status)])
    model = server.model()
    with pytest.raises(error) as caught:
        await run(Agent(name="assistant", model=model), streamed)
    from agents.retry import ModelRetryAdviceRequest

    advice = model.get_retry_advice(
        ModelRetryAdviceRequest(error=caught.value, attempt=1, stream=streamed)
    )
    assert advice is not None and advice.suggested is True and advice.retry_after == 0.001


async def test_a_bad_request_is_not_retried() -> None:
    server = FakeAnthropic([Turn(error=400)])
    model = server.model()
    with pytest.raises(anthropic.BadRequestError) as caught:
        await run(Agent(name="assistant", model=model), False)
    from agents.retry import ModelRetryAdviceRequest

    advice = model.get_retry_advice(
        ModelRetryAdviceRequest(error=caught.value, attempt=1, stream=False)
    )
    assert advice is not None and advice.suggested is False


async def test_the_sdks_runner_retries_on_the_models_advice(streamed: bool) -> None:
    server = FakeAnthropic([Turn(error=529), Turn(output_tokens=3)])
    settings = ModelSettings(
        retry=ModelRetrySettings(max_retries=2, policy=retry_policies.provider_suggested())
    )
    agent = Agent(name="assistant", model=server.model(), model_settings=settings)
    result = await run(agent, streamed)
    assert len(server.requests) == 2 and result.final_output == text_of(3)


# -- every limit, as on the OpenAI classes (tests/conformance) ----------------------------


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    return "found " + q


def call_tool() -> Turn:
    return Turn(tools=[("lookup", {"q": "a"})])


LIMIT_CASES = {
    # limit: (Limits, the script, the error)
    "max_llm_calls": (
        ab.Limits(max_llm_calls=1),
        [call_tool(), Turn(output_tokens=10)],
        ab.LLMCallLimitExceeded,
    ),
    "max_tool_calls": (
        ab.Limits(max_tool_calls=1),
        [call_tool(), call_tool(), Turn(output_tokens=10)],
        ab.ToolCallLimitExceeded,
    ),
    "max_input_tokens": (
        ab.Limits(max_input_tokens=1_500),
        [call_tool(), Turn(output_tokens=10)],
        ab.TokenLimitExceeded,
    ),
    "max_tokens": (ab.Limits(max_tokens=1_300), [Turn(output_tokens=5_000)], ab.TokenLimitExceeded),
    "max_output_tokens": (
        ab.Limits(max_output_tokens=60),
        [Turn(output_tokens=5_000)],
        ab.TokenLimitExceeded,
    ),
    "max_cost_usd": (
        ab.Limits(max_cost_usd="0.01"),
        [Turn(output_tokens=5_000)],
        ab.CostLimitExceeded,
    ),
}


@pytest.mark.parametrize("limit", sorted(LIMIT_CASES))
async def test_every_limit_trips_with_a_report_priced_at_the_servers_usage(
    limit: str, streamed: bool
) -> None:
    limits, script, error = LIMIT_CASES[limit]
    prompt = text_of(800)
    server = FakeAnthropic(list(script), input_tokens=estimate(prompt))
    agent = Agent(name="assistant", model=server.model(), tools=[lookup])
    with pytest.raises(error) as caught:
        await run(agent, streamed, prompt, limits=limits)
    report = caught.value.report
    assert report is not None and report.outcome == "tripped"
    assert report.tripped_limit == limit
    # every request the server answered is charged, at the server's figures
    assert [(c.output_tokens, c.estimated) for c in report.calls] == [
        (usage["output_tokens"], False) for usage in server.billed
    ]
    assert report.cost_usd == sum(
        (
            PRICES.cost("claude-sonnet-4-5", ab.TokenUsage.from_anthropic(usage))
            for usage in server.billed
        ),
        Decimal(0),
    )
    bound = getattr(limits, limit)
    if limit == "max_cost_usd":
        assert report.cost_usd <= bound
    elif limit in ("max_tokens", "max_output_tokens"):
        used = report.output_tokens if limit == "max_output_tokens" else report.total_tokens
        assert used <= bound


async def test_max_seconds_cancels_a_call_and_charges_its_input() -> None:
    import asyncio

    import httpx2

    server = FakeAnthropic([Turn(output_tokens=10)], input_tokens=100)

    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(5)
        return server._handle(request)

    client = server.client()
    client._client._transport = httpx2.MockTransport(slow)  # type: ignore[attr-defined]
    agent = Agent(name="a", model=AnthropicModel("claude-sonnet-4-5", client))
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=10_000)])
    with pytest.raises(ab.TimeLimitExceeded) as caught:
        await ab.Guard(limits=ab.Limits(max_seconds=0.3), budgets=budgets).run(
            agent, "hi", user="u"
        )
    assert caught.value.report is not None
    (row,) = await budgets.spend(user="u")
    assert row.reserved == 0 and row.spent == estimate("hi")


async def test_cap_output_then_refuse(streamed: bool) -> None:
    server = FakeAnthropic([Turn(output_tokens=50), Turn(output_tokens=50)], input_tokens=100)
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", tokens=250)],
        on_exhausted=[ab.CapOutput(200), ab.Refuse("Come back tomorrow.")],
        min_output_tokens=300,
    )
    agent = Agent(name="assistant", model=server.model())
    result = await run(agent, streamed, budgets=budgets, user="u")
    (call,) = ab.report_of(result).calls
    # under min_output_tokens but above the cap: CapOutput sends what the allowance leaves
    assert call.degraded == "cap_output" and 200 <= server.requests[0]["max_tokens"] < 250
    with pytest.raises(ab.BudgetExhausted, match="Come back tomorrow"):
        await run(agent, streamed, budgets=budgets, user="u")
    assert len(server.requests) == 1  # refused before anything was sent


async def test_an_ungoverned_run_is_the_bare_models_run(streamed: bool) -> None:
    from agents import Runner

    server = FakeAnthropic([call_tool(), Turn(output_tokens=4)], input_tokens=50)
    agent = Agent(name="assistant", model=server.model(), tools=[lookup])
    if streamed:
        result: Any = Runner.run_streamed(agent, PROMPT)
        async for _ in result.stream_events():
            pass
    else:
        result = await Runner.run(agent, PROMPT)
    assert result.final_output == text_of(4)
    usage = result.context_wrapper.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 100, 14)
    assert server.requests[0]["max_tokens"] == server.requests[1]["max_tokens"] == 8_192


async def test_a_limit_cut_inside_the_thinking_trips_the_limit_not_the_sdk_error(
    streamed: bool,
) -> None:
    server = FakeAnthropic([Turn(thinking_tokens=5_000)], input_tokens=400)
    agent = Agent(name="assistant", model=server.model(thinking_budget=2_048))
    with pytest.raises(ab.TokenLimitExceeded) as caught:
        await run(agent, streamed, limits=ab.Limits(max_output_tokens=1_500))
    body = server.requests[0]
    assert body["max_tokens"] == 1_500 and body["thinking"]["budget_tokens"] == 1_499
    report = caught.value.report
    assert report is not None
    (call,) = report.calls
    assert (call.input_tokens, call.output_tokens, call.estimated) == (400, 1_500, False)


async def test_downgrade_of_a_model_instance_builds_a_sibling_on_the_same_client() -> None:
    prompt = text_of(8_000)
    server = FakeAnthropic([Turn(output_tokens=20)], input_tokens=estimate(prompt))
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", usd="0.055")],
        on_exhausted=[ab.Downgrade("anthropic/claude-haiku-4-5")],
    )
    agent = Agent(name="assistant", model=server.model())
    result = await run(agent, False, prompt, budgets=budgets, user="u")
    assert server.requests[0]["model"] == "claude-haiku-4-5"  # the prefix is not sent
    (call,) = ab.report_of(result).calls
    assert call.degraded == "downgrade" and call.price_key == "claude-haiku-4-5"


# -- the provider's own token count --------------------------------------------------------


async def test_an_opted_in_count_decides_the_input_limit_before_the_call(streamed: bool) -> None:
    # offline, the prompt is ~10 tokens; Anthropic counts 4,321: the count decides
    server = FakeAnthropic([Turn()], count=4_321)
    agent = Agent(name="assistant", model=server.model(count_tokens=True))
    with pytest.raises(ab.TokenLimitExceeded) as caught:
        await run(agent, streamed, limits=ab.Limits(max_input_tokens=4_000))
    assert (caught.value.limit, caught.value.observed) == ("max_input_tokens", 4_321)
    assert server.requests == [] and len(server.counted) == 1  # counted, never sent
    # without opting in, the offline estimate fits and the call is sent
    offline = FakeAnthropic([Turn()], count=4_321)
    await run(
        Agent(name="assistant", model=offline.model()),
        streamed,
        limits=ab.Limits(max_input_tokens=4_000),
    )
    assert len(offline.requests) == 1 and offline.counted == []


async def test_an_opted_in_count_is_what_a_budget_reserves(streamed: bool) -> None:
    server = FakeAnthropic([Turn(output_tokens=10)], input_tokens=4_321, count=4_321)
    agent = Agent(name="assistant", model=server.model(count_tokens=True, max_tokens=100))
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=4_400)])
    # the worst case is 4,321 counted + 100 output bound = 4,421 > 4,400: lowered to 79
    result = await run(agent, streamed, budgets=budgets, user="u")
    assert server.requests[0]["max_tokens"] == 4_400 - 4_321
    assert ab.report_of(result).calls[0].input_tokens == 4_321
    await budgets.close()
