"""Offline building blocks for cost tests: named scripted models with usage.

The Agents SDK's ``ScriptedModel`` plays scripted responses; agentbudget prices a
``Model`` instance by its ``model`` attribute, so these helpers give it a name::

    from agentbudget.testing import scripted_model, reply, tool_call

    model = scripted_model("gpt-4o", [
        tool_call("lookup", {"q": "x"}, input_tokens=1_000, output_tokens=20),
        reply("done", input_tokens=1_200, output_tokens=50),
    ])
    agent = Agent(name="support", model=model, tools=[lookup])
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal
from typing import Any

from agents import Agent
from agents.handoffs import Handoff
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from .errors import ConfigurationError
from .guard import default_guard
from .money import parse_usd
from .pricing import PriceTable, TokenUsage

__all__ = [
    "NamedScriptedModel",
    "agent_costing",
    "handoff_call",
    "input_tokens_costing",
    "long_stream",
    "reply",
    "scripted_agent",
    "scripted_model",
    "tool_call",
    "tool_loop",
    "usage",
]

_ids = itertools.count(1)


class NamedScriptedModel(ScriptedModel):
    """A ``ScriptedModel`` with a ``model`` name, so agentbudget prices it like the real one."""

    def __init__(self, model: str, steps: Iterable[Any] = (), **kwargs: Any) -> None:
        super().__init__(steps, **kwargs)
        self.model = model


def scripted_model(model: str, steps: Iterable[Any] = (), **kwargs: Any) -> NamedScriptedModel:
    """A scripted model priced as ``model`` (for example ``"gpt-4o"``)."""
    return NamedScriptedModel(model, steps, **kwargs)


def usage(
    input_tokens: int = 0,
    output_tokens: int = 0,
    *,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> Usage:
    """The ``agents.Usage`` of one request."""
    return Usage(
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_tokens_details=InputTokensDetails.model_validate(
            {"cached_tokens": cached_input_tokens, "cache_write_tokens": cache_write_tokens}
        ),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning_tokens),
    )


def reply(
    text: str, *, input_tokens: int = 100, output_tokens: int = 20, **details: int
) -> ModelStep:
    """A step that answers with ``text``."""
    return ModelStep(
        output=[assistant_message(text, item_id=f"msg-{next(_ids)}")],
        usage=usage(input_tokens, output_tokens, **details),
    )


def tool_call(
    name: str,
    arguments: Mapping[str, Any] | str = "{}",
    *,
    input_tokens: int = 100,
    output_tokens: int = 20,
    calls: int = 1,
    **details: int,
) -> ModelStep:
    """A step that asks for ``calls`` calls of the tool ``name``."""
    return ModelStep(
        output=[function_call(name, arguments, call_id=f"call-{next(_ids)}") for _ in range(calls)],
        usage=usage(input_tokens, output_tokens, **details),
    )


def handoff_call(
    target: Agent[Any], *, input_tokens: int = 100, output_tokens: int = 10, **details: int
) -> ModelStep:
    """A step that hands off to ``target`` (the SDK's default ``transfer_to_<name>`` tool)."""
    tool_name = Handoff.default_tool_name(target)
    return tool_call(
        tool_name, "{}", input_tokens=input_tokens, output_tokens=output_tokens, **details
    )


def tool_loop(
    name: str,
    *,
    times: int,
    arguments: Mapping[str, Any] | str = "{}",
    input_tokens: int = 100,
    output_tokens: int = 20,
) -> list[ModelStep]:
    """``times`` steps that each call the tool again: a runaway loop."""
    return [
        tool_call(name, arguments, input_tokens=input_tokens, output_tokens=output_tokens)
        for _ in range(times)
    ]


def long_stream(
    deltas: int,
    *,
    delta: str = " word",
    input_tokens: int = 50,
    yield_every: int = 0,
) -> ModelStep:
    """A streamed answer of ``deltas`` text deltas (each ``delta``, one token by default).

    The final ``response.completed`` event reports ``deltas`` output tokens. With
    ``yield_every=n`` the stream yields to the event loop every ``n`` deltas, as a network
    stream does.
    """
    text = delta * deltas

    async def events(_call: ModelCall) -> AsyncIterator[Any]:
        item_id = f"msg-{next(_ids)}"
        base = Response(
            id="resp-stream",
            created_at=0,
            model="scripted",
            object="response",
            output=[],
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
            status="in_progress",
        )
        yield ResponseCreatedEvent(type="response.created", response=base, sequence_number=0)
        for n in range(deltas):
            if yield_every and n % yield_every == 0:
                await asyncio.sleep(0)
            yield ResponseTextDeltaEvent(
                type="response.output_text.delta",
                delta=delta,
                item_id=item_id,
                output_index=0,
                content_index=0,
                sequence_number=n + 1,
                logprobs=[],
            )
        message = ResponseOutputMessage(
            id=item_id,
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        done = base.model_copy(
            update={
                "status": "completed",
                "output": [message],
                "usage": ResponseUsage(
                    input_tokens=input_tokens,
                    output_tokens=deltas,
                    total_tokens=input_tokens + deltas,
                    input_tokens_details=InputTokensDetails.model_validate(
                        {"cached_tokens": 0, "cache_write_tokens": 0}
                    ),
                    output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
                ),
            }
        )
        yield ResponseCompletedEvent(
            type="response.completed", response=done, sequence_number=deltas + 1
        )

    return ModelStep.stream(events)


# -- agents with a known cost (for cost tests) -----------------------------------------------


def scripted_agent(
    name: str, steps: Iterable[Any], *, model: str = "gpt-4o", **agent_kwargs: Any
) -> Agent[Any]:
    """An ``Agent`` named ``name`` whose model plays ``steps`` and is priced as ``model``.

    ``agent_kwargs`` go to ``Agent`` (``tools=``, ``handoffs=``, ``instructions=``...).
    """
    return Agent(name=name, model=scripted_model(model, steps), **agent_kwargs)


def input_tokens_costing(
    usd: Decimal | str | int, *, model: str = "gpt-4o", prices: PriceTable | None = None
) -> int:
    """How many input tokens of ``model`` cost exactly ``usd`` (one request, no output).

    ``prices`` defaults to the price table agentbudget records runs with (the default
    ``Guard``'s, which ``agentbudget.configure(prices=...)`` sets).

    Raises:
        ConfigurationError: when no whole number of tokens costs exactly ``usd``.
        UnknownModelError: when ``model`` has no price.
    """
    try:
        amount = parse_usd(usd, field="usd")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    table = prices if prices is not None else default_guard().prices
    rate = table.get(model).input
    if amount == 0:
        return 0
    if rate == 0:
        raise ConfigurationError(f"{model} input is free; no number of tokens costs ${amount}")
    tokens = amount * Decimal(1_000_000) / rate
    if tokens != tokens.to_integral_value():
        raise ConfigurationError(
            f"no whole number of {model} input tokens costs exactly ${amount} at ${rate} per "
            f"1M; use a multiple of ${format(rate / Decimal(1_000_000), 'f')}"
        )
    count = int(tokens)
    actual = table.cost(model, TokenUsage(input_tokens=count, output_tokens=0))
    if actual != amount:  # a long-context tier changes the rate above a threshold
        raise ConfigurationError(
            f"{count} {model} input tokens cost ${actual}, not ${amount} (a pricing tier "
            "applies); choose a smaller amount"
        )
    return count


def agent_costing(
    usd: Decimal | str | int,
    *,
    model: str = "gpt-4o",
    name: str = "agent",
    text: str = "done",
    runs: int = 1,
    prices: PriceTable | None = None,
    **agent_kwargs: Any,
) -> Agent[Any]:
    """An ``Agent`` whose every run is one reply costing exactly ``usd`` (input tokens only).

    ::

        agent = agent_costing("2.50", model="gpt-4o")   # 1,000,000 input tokens
        Runner.run_sync(agent, "hi")                    # costs exactly $2.50

    Args:
        usd: the cost of one run, as ``str``, ``int`` or ``Decimal`` (not ``float``).
        runs: how many runs the agent can serve (one scripted reply each).

    Raises:
        ConfigurationError: when no whole number of tokens costs exactly ``usd``, or
            ``usd`` is 0.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ConfigurationError(f"runs must be a positive int, got {runs!r}")
    tokens = input_tokens_costing(usd, model=model, prices=prices)
    if tokens == 0:
        raise ConfigurationError(
            "agent_costing needs usd > 0: a reply that reports no usage is charged its input "
            "estimate, never $0"
        )
    replies = [reply(text, input_tokens=tokens, output_tokens=0) for _ in range(runs)]
    return scripted_agent(name, replies, model=model, **agent_kwargs)
