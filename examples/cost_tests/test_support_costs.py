"""Cost tests for a support agent: copy this file next to your own tests.

Runs offline: the agent's model is a scripted stand-in priced as gpt-4o-mini, so every
number below is exact. Needs only `pip install agentbudget-sdk pytest`; the plugin is loaded
automatically.
"""

from decimal import Decimal

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled

from agentbudget.testing import reply, scripted_model, tool_call

set_tracing_disabled(True)  # offline: no trace export


@function_tool
def lookup_order(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: shipped"


def support_agent() -> Agent:
    # In your suite: your real agent, with its model swapped for a scripted one:
    #   agent.clone(model=scripted_model("gpt-4o-mini", [...]))
    model = scripted_model(
        "gpt-4o-mini",
        [
            tool_call("lookup_order", {"order_id": "42"}, input_tokens=1_200, output_tokens=30),
            reply("Your order has shipped.", input_tokens=1_400, output_tokens=60),
        ],
    )
    return Agent(name="support", model=model, tools=[lookup_order])


@pytest.mark.agent_budget(max_cost_usd="0.01", max_tool_calls=3)
def test_support_flow_costs_under_one_cent():
    result = Runner.run_sync(support_agent(), "Where is order 42?")
    assert result.final_output == "Your order has shipped."


def test_support_flow_cost_breakdown(agent_costs):
    Runner.run_sync(support_agent(), "Where is order 42?")

    assert agent_costs.llm_calls == 2
    assert agent_costs.tool_calls == 1
    assert agent_costs.tokens == 2_690
    # 2,600 input tokens x $0.15/1M + 90 output tokens x $0.60/1M, exactly
    assert agent_costs.cost_usd == Decimal("0.000444")
    agent_costs.assert_under(usd="0.01", tool_calls=3, llm_calls=4)
