"""``agentbudget.testing`` helpers for cost tests, checked with the ``agent_costs`` fixture
itself (this suite loads the plugin through its entry point like any user's)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from agents import Runner, function_tool
from agents.testing import UnexpectedModelCall

import agentbudget as ab
from agentbudget.testing import (
    agent_costing,
    input_tokens_costing,
    reply,
    scripted_agent,
    tool_call,
)


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"found {q}"


@pytest.mark.parametrize(
    ("usd", "model", "tokens"),
    [
        ("2.50", "gpt-4o", 1_000_000),
        ("0.01", "gpt-4o", 4_000),
        (Decimal("0.000444"), "gpt-4o-mini", 2_960),
        (3, "gpt-4.1", 1_500_000),
    ],
)
def test_agent_costing_costs_exactly_the_amount(agent_costs, usd, model, tokens):
    agent = agent_costing(usd, model=model, name="priced")
    result = Runner.run_sync(agent, "hi")
    assert result.final_output == "done"
    [report] = agent_costs.reports
    assert report.agent == "priced"
    assert report.cost_usd == Decimal(usd)
    assert agent_costs.cost_usd == Decimal(usd)
    assert report.calls[0].model == model
    assert (report.input_tokens, report.output_tokens) == (tokens, 0)
    assert input_tokens_costing(usd, model=model) == tokens


def test_agent_costing_serves_as_many_runs_as_asked(agent_costs):
    agent = agent_costing("0.01", runs=2, text="ok")
    assert Runner.run_sync(agent, "a").final_output == "ok"
    assert Runner.run_sync(agent, "b").final_output == "ok"
    assert agent_costs.cost_usd == Decimal("0.02")
    with pytest.raises(UnexpectedModelCall):
        Runner.run_sync(agent, "c")


def test_agent_costing_passes_agent_options_through(agent_costs):
    agent = agent_costing("0.01", name="support", instructions="Be brief.", tools=[lookup])
    assert agent.instructions == "Be brief."
    assert [tool.name for tool in agent.tools] == ["lookup"]
    Runner.run_sync(agent, "hi")
    assert agent_costs.cost_usd == Decimal("0.01")


def test_agent_costing_uses_the_configured_price_table(agent_costs):
    prices = ab.PriceTable.default().with_prices({"my-ft": ab.ModelPrice(input="4", output="16")})
    ab.configure(prices=prices)
    agent = agent_costing("0.02", model="my-ft")
    Runner.run_sync(agent, "hi")
    [report] = agent_costs.reports
    assert (report.input_tokens, report.cost_usd) == (5_000, Decimal("0.02"))


@pytest.mark.parametrize(
    ("usd", "model", "prices", "error", "message"),
    [
        (
            "0.01",
            "gpt-4o-mini",
            None,
            ab.ConfigurationError,
            r"no whole number of gpt-4o-mini input tokens costs exactly \$0.01 at \$0.15 per "
            r"1M; use a multiple of \$0.00000015",
        ),
        (0.5, "gpt-4o", None, ab.ConfigurationError, "usd must be a Decimal, str or int"),
        ("-1", "gpt-4o", None, ab.ConfigurationError, "usd must not be negative"),
        ("1", "no-such-model-xyz", None, ab.UnknownModelError, "No price for model"),
        (
            "1",
            "local",
            ab.PriceTable({"local": ab.ModelPrice(input="0", output="0")}),
            ab.ConfigurationError,
            r"local input is free; no number of tokens costs \$1",
        ),
        (
            "3",
            "tiered",
            ab.PriceTable(
                {
                    "tiered": ab.ModelPrice(
                        input="1",
                        output="2",
                        tiers=(ab.PriceTier(above_input_tokens=1_000, input="2", output="4"),),
                    )
                }
            ),
            ab.ConfigurationError,
            r"3000000 tiered input tokens cost \$6.000000000, not \$3 \(a pricing tier applies\)",
        ),
    ],
)
def test_amounts_no_whole_number_of_tokens_can_cost_are_refused(usd, model, prices, error, message):
    with pytest.raises(error, match=message):
        input_tokens_costing(usd, model=model, prices=prices)
    with pytest.raises(error, match=message):
        agent_costing(usd, model=model, prices=prices)


@pytest.mark.parametrize("runs", [0, -1, True, 1.0])
def test_agent_costing_refuses_a_bad_run_count(runs):
    with pytest.raises(ab.ConfigurationError, match="runs must be a positive int"):
        agent_costing("0.01", runs=runs)


def test_scripted_agent_is_priced_as_its_model(agent_costs):
    agent = scripted_agent(
        "support",
        [
            tool_call("lookup", {"q": "order 42"}, input_tokens=1_200, output_tokens=30),
            reply("shipped", input_tokens=1_400, output_tokens=60),
        ],
        model="gpt-4o-mini",
        tools=[lookup],
    )
    assert agent.name == "support"
    assert Runner.run_sync(agent, "where is order 42?").final_output == "shipped"
    # 2,600 x $0.15/1M + 90 x $0.60/1M
    assert agent_costs.cost_usd == Decimal("0.000444")
    assert (agent_costs.tool_calls, agent_costs.llm_calls) == (1, 2)
    assert {call.model for call in agent_costs.reports[0].calls} == {"gpt-4o-mini"}
