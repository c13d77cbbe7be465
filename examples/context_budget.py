"""Context budgets: a 40-question research session, with and without a ContextBudget.

Each question makes the agent search (a 3,000-character result) and then answer; the
whole conversation is sent back on every call, as the Agents SDK does. Run once with no
context budget and once with ``ContextBudget(max_input_tokens=4_000)``, and compare what
each call sent and cost.

Offline: the model is scripted and bills the input it is actually sent, counted with
agentbudget's estimator (a provider counts with its own tokenizer, to within a few
percent).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, assistant_message, function_call

import agentbudget as ab
from agentbudget.testing import scripted_model, usage
from agentbudget.tokens import estimate_call_input, request_tool_tokens

MODEL = "gpt-4o-mini"
QUESTIONS = 40


@function_tool
def search(query: str) -> str:
    """Search the document store."""
    line = f"[{query}] the quarterly report says revenue grew in the northern region. "
    return (line * 60)[:3_000]


def billed_input(call: ModelCall) -> int:
    """What the provider bills: the input this call was sent."""
    tools = request_tool_tokens(MODEL, call.tools, call.handoffs, call.output_schema)
    return estimate_call_input(
        MODEL, call.system_instructions, call.input, tool_tokens=tools
    ).tokens


def model() -> Any:
    steps = []
    for n in range(QUESTIONS):

        def searches(call: ModelCall, n: int = n) -> ModelStep:
            return ModelStep(
                output=[function_call("search", f'{{"query": "topic {n}"}}', call_id=f"c{n}")],
                usage=usage(billed_input(call), 20),
            )

        def answers(call: ModelCall, n: int = n) -> ModelStep:
            text = f"Topic {n}: revenue grew in the northern region."
            return ModelStep(
                output=[assistant_message(text, item_id=f"m{n}")],
                usage=usage(billed_input(call), 15),
            )

        steps += [ModelStep.respond(searches), ModelStep.respond(answers)]
    return scripted_model(MODEL, steps)


async def session(guard: ab.Guard) -> list[ab.RunReport]:
    agent = Agent(
        name="analyst",
        instructions="Answer questions about the quarterly reports. Search first.",
        model=model(),
        tools=[search],
    )
    history: list[Any] = []
    reports = []
    for n in range(QUESTIONS):
        question = {"role": "user", "content": f"What does the report say about topic {n}?"}
        result = await guard.run(agent, [*history, question])
        history = result.to_input_list()
        reports.append(ab.report_of(result))
    return reports


async def main() -> dict[str, Any]:
    set_tracing_disabled(True)
    plain = await session(ab.Guard())
    budgeted = await session(ab.Guard(context=ab.ContextBudget(max_input_tokens=4_000)))
    figures: dict[str, Any] = {}
    for name, reports in (("without", plain), ("with", budgeted)):
        calls = [call for report in reports for call in report.calls]
        figures[name] = {
            "input_tokens": sum(c.input_tokens for c in calls),
            "largest_call": max(c.input_tokens for c in calls),
            "cost_usd": sum((r.cost_usd or Decimal(0) for r in reports), Decimal(0)),
            "saved_tokens": sum(r.context_saved_tokens for r in reports),
            "saved_usd": sum((r.context_saved_usd for r in reports), Decimal(0)),
        }
    print(f"{QUESTIONS} questions, {2 * QUESTIONS} LLM calls on {MODEL}:")
    for name in ("without", "with"):
        f = figures[name]
        print(
            f"  {name:>7} a context budget: {f['input_tokens']:>9,} input tokens, "
            f"largest call {f['largest_call']:>6,}, cost ${f['cost_usd']:.6f}"
        )
    saved = figures["with"]
    share = 1 - figures["with"]["input_tokens"] / figures["without"]["input_tokens"]
    print(
        f"  the budget removed {saved['saved_tokens']:,} input tokens "
        f"(${saved['saved_usd']:.6f} at the input rate): {share:.0%} fewer input tokens"
    )
    return figures


if __name__ == "__main__":
    asyncio.run(main())
