"""The cache key: the SHA-256 of the canonical JSON of a versioned record of everything
that can change a run's answer.

The record holds the tenant scope, the namespace, the starting agent's name, its
resolved instructions (dynamic instructions evaluated), the resolved model and the full
model settings, the tools and handoffs with their JSON schemas, the output type's schema,
the prompt, the model provider and input filter, and the input items. A run whose answer
depends on something the record cannot hold (MCP servers, tools enabled by a callable,
a hosted prompt with a callable, server-side conversation state) has no key: it is
neither read nor written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
from collections.abc import Awaitable
from typing import Any

from agents import Agent, ModelSettings, RunConfig, RunContextWrapper
from agents.agent_output import AgentOutputSchema, AgentOutputSchemaBase
from agents.handoffs import Handoff
from pydantic_core import PydanticSerializationError, to_json

from ..resolution import model_name

__all__ = ["KEY_VERSION", "Uncacheable", "canonical_json", "digest", "key_record", "output_schema"]

KEY_VERSION = 1


class Uncacheable(Exception):
    """This run has no safe cache key (the reason is the message)."""


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON of a key record, deterministic: the record's own keys in a fixed order,
    the keys of every mapping the user gave (input items, settings' extra args, schemas)
    sorted, models and dataclasses in field order. Built with ``pydantic_core.to_json``
    (a tenth of ``json.dumps``'s time on a small record)."""
    try:
        return to_json(value, fallback=_unencodable)
    except PydanticSerializationError as exc:
        raise Uncacheable(str(exc)) from exc


def _sorted(value: Any) -> Any:
    """``value`` with the keys of every dict in it sorted (for JSON from user data)."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted(item) for item in value]
    return value


def _unencodable(value: Any) -> Any:
    raise Uncacheable(f"cannot key {type(value).__name__} values")


def digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


@functools.lru_cache(maxsize=256)
def _schema_for(output_type: Any) -> AgentOutputSchema:
    return AgentOutputSchema(output_type)


def output_schema(agent: Agent[Any]) -> AgentOutputSchemaBase | None:
    """The agent's output schema (None for plain text), as the SDK builds it."""
    output_type = agent.output_type
    if output_type is None or output_type is str:
        return None
    if isinstance(output_type, AgentOutputSchemaBase):
        return output_type
    try:
        return _schema_for(output_type)  # type: ignore[arg-type]
    except TypeError:  # unhashable type objects: build one each time
        return AgentOutputSchema(output_type)


def instructions_of(agent: Agent[Any], context: Any) -> str | Awaitable[str | None] | None:
    """The agent's instructions; an awaitable when dynamic instructions are async."""
    instructions = agent.instructions
    if instructions is None or isinstance(instructions, str):
        return instructions
    if callable(instructions):
        wrapper = RunContextWrapper(context=context)
        value: Any = instructions(wrapper, agent)
        if inspect.isawaitable(value) or value is None or isinstance(value, str):
            return value
        raise Uncacheable(f"dynamic instructions returned {type(value).__name__}")
    raise Uncacheable(f"instructions of type {type(instructions).__name__}")


def key_record(
    *,
    scope: str,
    scope_id: str | None,
    namespace: str | None,
    agent: Agent[Any],
    instructions: str | None,
    input: Any,
    run_config: RunConfig | dict[str, Any] | None,
) -> dict[str, Any]:
    """The versioned record the key is the digest of.

    Raises:
        Uncacheable: the run's answer depends on something the record cannot hold.
    """
    if agent.mcp_servers:
        raise Uncacheable("the agent has MCP servers (its tools are only known at run time)")
    if isinstance(run_config, dict):
        run_config = RunConfig(**run_config)
    settings = agent.model_settings
    if run_config is not None and run_config.model_settings is not None:
        settings = settings.resolve(run_config.model_settings)
    tools: list[dict[str, Any]] = []
    for tool in agent.tools:
        enabled = getattr(tool, "is_enabled", True)
        if not isinstance(enabled, bool):
            raise Uncacheable(f"tool {tool.name!r} is enabled by a callable")
        if not enabled:
            continue
        tools.append(_tool_record(tool))
    handoffs: list[dict[str, Any]] = []
    for target in agent.handoffs:
        if isinstance(target, Handoff):
            if not isinstance(target.is_enabled, bool):
                raise Uncacheable(f"handoff {target.tool_name!r} is enabled by a callable")
            handoffs.append(
                {
                    "name": target.tool_name,
                    "agent": target.agent_name,
                    "description": target.tool_description,
                    "schema": target.input_json_schema,
                }
            )
        else:
            handoffs.append(
                {
                    "name": Handoff.default_tool_name(target),
                    "agent": target.name,
                    "description": target.handoff_description,
                    "schema": None,
                }
            )
    schema = output_schema(agent)
    output = (
        None
        if schema is None
        else {
            "name": schema.name(),
            "schema": schema.json_schema(),
            "strict": schema.is_strict_json_schema(),
        }
    )
    prompt = agent.prompt
    if prompt is not None and callable(prompt):
        raise Uncacheable("the agent's prompt is a callable")
    provider = None
    input_filter = None
    if run_config is not None:
        provider = type(run_config.model_provider).__qualname__
        if run_config.call_model_input_filter is not None:
            input_filter = _qualname(run_config.call_model_input_filter)
    return {
        "v": KEY_VERSION,
        "namespace": namespace,
        "scope": [scope, scope_id],
        "agent": agent.name,
        "instructions": instructions,
        "model": model_name(agent, run_config),
        "provider": provider,
        "model_settings": _settings(settings),
        "tools": _sorted(tools) if tools else tools,
        "tool_use_behavior": _behavior(agent.tool_use_behavior),
        "handoffs": _sorted(handoffs) if handoffs else handoffs,
        "output": output if output is None else _sorted(output),
        "prompt": prompt if prompt is None else _sorted(prompt),
        "input_filter": input_filter,
        "input": input if isinstance(input, str) else _sorted(input),
    }


def _settings(settings: ModelSettings) -> dict[str, Any]:
    """Every model setting that is set, keys sorted (pydantic values are encoded by
    ``canonical_json``). ``ModelSettings.to_json_dict`` builds a ``TypeAdapter`` per call
    (24 us); this is 1 us."""
    values = {name: value for name, value in vars(settings).items() if value is not None}
    return {name: _sorted(values[name]) for name in sorted(values)}


def _tool_record(tool: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"name": tool.name, "type": type(tool).__name__}
    schema = getattr(tool, "params_json_schema", None)
    if schema is not None:
        record["schema"] = schema
        record["description"] = getattr(tool, "description", None)
        record["strict"] = getattr(tool, "strict_json_schema", None)
    elif dataclasses.is_dataclass(tool):
        # hosted tools (web search, file search, ...): their configuration is the schema
        record["config"] = {
            f.name: getattr(tool, f.name)
            for f in dataclasses.fields(tool)
            if not callable(getattr(tool, f.name))
        }
    return record


def _behavior(behavior: Any) -> Any:
    if isinstance(behavior, str):
        return behavior
    if isinstance(behavior, dict):
        return behavior
    return _qualname(behavior)


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
