"""Scripted steps and agents billed as a provider would (the budgets tests).

``billed`` answers with the input tiktoken counts for the call and at most the output
bound the call was sent with, so a run's worst case and its actual usage agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents import Agent, ModelSettings
from agents.testing import ModelStep

from agentbudget.testing import reply, scripted_model, tool_call
from agentbudget.tokens import estimate_call_input, tool_schema

QUESTION = "What is the refund policy?"


def billed(model: str, *, output_tokens: int, tool: str | None = None) -> Callable[[Any], Any]:
    """A scripted step billed as a provider would: the input as tiktoken counts it, and at
    most the output bound the call was sent with."""

    def respond(call: Any) -> Any:
        schemas = [tool_schema(t) for t in call.tools] + [tool_schema(h) for h in call.handoffs]
        tokens = estimate_call_input(model, call.system_instructions, call.input, schemas).tokens
        out = min(output_tokens, call.model_settings.max_tokens or output_tokens)
        if tool is not None:
            return tool_call(tool, {"q": "x"}, input_tokens=tokens, output_tokens=out)
        return reply("answer", input_tokens=tokens, output_tokens=out)

    return respond


def est(model: str = "gpt-4o", text: str = QUESTION) -> int:
    """The input tokens agentbudget estimates for a first call asking ``text``."""
    return estimate_call_input(model, None, [{"role": "user", "content": text}]).tokens


def agent(
    model: str = "gpt-4o", output_tokens: int = 100, bound: int | None = 100, steps: int = 1
) -> Agent[Any]:
    """An agent whose ``steps`` calls are each ``billed`` with ``output_tokens`` (bound sent:
    ``bound``)."""
    return Agent(
        name="support",
        model=scripted_model(
            model,
            [ModelStep.respond(billed(model, output_tokens=output_tokens)) for _ in range(steps)],
        ),
        model_settings=ModelSettings(max_tokens=bound),
    )
