"""What a cache entry holds, and the result a hit returns.

An entry is JSON: the run's items (messages, reasoning, function tool calls and their
outputs, as the Responses API shapes them), its final output (text, or re-validated from
the last message by the agent's output schema, as the SDK does), and what the run cost.

A replayed ``RunResult`` carries ``final_output``, ``new_items`` (bound to the starting
agent), ``to_input_list()``, ``last_agent`` and one ``raw_responses`` entry with the
replayed output, zero usage and no ``response_id``. It carries no guardrail results, no
trace and no interruptions. A streamed hit is a real ``RunResultStreaming``: the SDK runs
the agent against a model that plays the stored items back, so ``stream_events()`` yields
the same kinds of events a live run yields.
"""

from __future__ import annotations

import contextvars
import dataclasses
from dataclasses import MISSING
from decimal import Decimal
from typing import Any

from agents import Agent, RunConfig, RunContextWrapper
from agents.items import (
    ItemHelpers,
    MessageOutputItem,
    ModelResponse,
    ReasoningItem,
    RunItem,
    ToolCallItem,
    ToolCallOutputItem,
)
from agents.result import RunResult
from agents.run import DEFAULT_MAX_TURNS, AgentRunner
from agents.testing import ModelStep, ScriptedModel
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseReasoningItem,
)

from .. import _sdk
from .key import output_schema

__all__ = ["ENTRY_VERSION", "entry_of", "replay_result", "replay_streamed"]

ENTRY_VERSION = 1


def entry_of(result: Any, agent: Agent[Any], cost_usd: Decimal | None) -> dict[str, Any] | None:
    """The cache entry of a completed run, or None when it cannot be replayed exactly."""
    items: list[dict[str, Any]] = []
    for item in result.new_items:
        if isinstance(item, MessageOutputItem):
            items.append({"kind": "message", "raw": _dump(item.raw_item)})
        elif isinstance(item, ReasoningItem):
            items.append({"kind": "reasoning", "raw": _dump(item.raw_item)})
        elif isinstance(item, ToolCallItem) and isinstance(item.raw_item, ResponseFunctionToolCall):
            items.append({"kind": "tool_call", "raw": _dump(item.raw_item)})
        elif isinstance(item, ToolCallOutputItem) and isinstance(item.raw_item, dict):
            if not isinstance(item.output, (str, int, float, bool, type(None))):
                return None
            items.append({"kind": "tool_output", "raw": dict(item.raw_item), "out": item.output})
        else:
            return None
    output = _output_of(result, agent)
    if output is None:
        return None
    return {
        "v": ENTRY_VERSION,
        "items": items,
        "output": output,
        "cost_usd": None if cost_usd is None else str(cost_usd),
    }


def _dump(raw: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = raw.model_dump(mode="json", exclude_unset=True)
    return dumped


def _output_of(result: Any, agent: Agent[Any]) -> dict[str, Any] | None:
    final = result.final_output
    schema = output_schema(agent)
    if schema is None:
        return {"text": final} if isinstance(final, str) else None
    # Structured output: kept as the last message's text, re-validated on replay exactly as
    # the SDK validated it; stored only when that reproduces the final output.
    messages = [i for i in result.new_items if isinstance(i, MessageOutputItem)]
    if not messages:
        return None
    text = ItemHelpers.extract_last_text(messages[-1].raw_item)
    if text is None:
        return None
    try:
        if schema.validate_json(text) != final:
            return None
    except Exception:
        return None
    return {"json": text}


def _items(entry: dict[str, Any], agent: Agent[Any]) -> list[RunItem]:
    items: list[RunItem] = []
    for stored in entry["items"]:
        kind, raw = stored["kind"], stored["raw"]
        if kind == "message":
            items.append(MessageOutputItem(agent=agent, raw_item=ResponseOutputMessage(**raw)))
        elif kind == "reasoning":
            items.append(ReasoningItem(agent=agent, raw_item=ResponseReasoningItem(**raw)))
        elif kind == "tool_call":
            items.append(ToolCallItem(agent=agent, raw_item=ResponseFunctionToolCall(**raw)))
        else:
            items.append(ToolCallOutputItem(agent=agent, raw_item=dict(raw), output=stored["out"]))
    return items


def final_output(entry: dict[str, Any], agent: Agent[Any]) -> Any:
    output = entry["output"]
    if "text" in output:
        return output["text"]
    schema = output_schema(agent)
    assert schema is not None
    return schema.validate_json(output["json"])


def replay_result(
    entry: dict[str, Any], agent: Agent[Any], input: Any, kwargs: dict[str, Any]
) -> Any:
    """The ``RunResult`` a hit returns (built directly: the SDK does not run)."""
    items = _items(entry, agent)
    outputs: list[Any] = [
        item.raw_item for item in items if not isinstance(item, ToolCallOutputItem)
    ]
    usage = _zero_usage()
    return RunResult(
        input=input,
        new_items=items,
        raw_responses=[_model_response(outputs, usage)],
        final_output=final_output(entry, agent),
        input_guardrail_results=[],
        output_guardrail_results=[],
        tool_input_guardrail_results=[],
        tool_output_guardrail_results=[],
        context_wrapper=RunContextWrapper(context=kwargs.get("context"), usage=usage),
        _last_agent=agent,
        max_turns=kwargs.get("max_turns", DEFAULT_MAX_TURNS),
    )


_ZERO = Usage()
_RESPONSE_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(ModelResponse) if f.default is not MISSING
}


def _model_response(output: list[Any], usage: Usage) -> ModelResponse:
    """A ``ModelResponse`` of already validated items, without validating them again
    (``ModelResponse`` is a pydantic dataclass: 7 us, a fifth of a hit)."""
    response: ModelResponse = object.__new__(ModelResponse)
    response.__dict__.update(_RESPONSE_DEFAULTS, output=output, usage=usage, response_id=None)
    return response


def _zero_usage() -> Usage:
    """A fresh zero ``Usage``: a copy of one (building a ``Usage`` validates: 26 us; this
    is 1 us). The token details are pydantic models the SDK replaces, never mutates."""
    usage: Usage = object.__new__(Usage)
    usage.__dict__.update(_ZERO.__dict__)
    usage.request_usage_entries = []
    return usage


def streamable(entry: dict[str, Any]) -> bool:
    """True when a streamed run can replay this entry (one model turn: no tool calls)."""
    return all(stored["kind"] in ("message", "reasoning") for stored in entry["items"])


def replay_streamed(
    entry: dict[str, Any], agent: Agent[Any], input: Any, kwargs: dict[str, Any]
) -> Any:
    """A ``RunResultStreaming`` that plays the stored answer back through the SDK's own
    streamed run loop, outside governance (no meter: it costs nothing and counts nothing).

    The agent is a clone whose model plays the stored items; guardrails and hooks are not
    run again (they ran when the answer was stored), tools and handoffs are not offered.
    """
    raw: list[Any] = [item.raw_item for item in _items(entry, agent)]
    model = ScriptedModel([ModelStep(output=raw, usage=Usage())])
    player = agent.clone(
        model=model,
        tools=[],
        handoffs=[],
        input_guardrails=[],
        output_guardrails=[],
        hooks=None,
    )
    run_config = kwargs.get("run_config")
    tracing_disabled = run_config.tracing_disabled if isinstance(run_config, RunConfig) else False
    replay_kwargs = {
        "context": kwargs.get("context"),
        "max_turns": kwargs.get("max_turns", DEFAULT_MAX_TURNS),
        "run_config": RunConfig(model=model, tracing_disabled=tracing_disabled),
    }
    # An empty context: no current run, no Guard request, no scopes; the SDK's tasks copy it.
    return contextvars.Context().run(
        _sdk.original("run_streamed"), AgentRunner(), player, input, **replay_kwargs
    )
