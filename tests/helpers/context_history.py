"""A scripted long conversation: user asks, the assistant calls a tool with a bulky output,
then answers. Turn ``i`` is four items; 200 turns are 800 items."""

from __future__ import annotations

from typing import Any

from agentbudget.tokens import estimate_call_input, request_tool_tokens

INSTRUCTIONS = "You are a research assistant. Answer from the search results."
OUTPUT_CHARS = 3_000


def bulky(i: int, chars: int = OUTPUT_CHARS) -> str:
    """A tool output of about ``chars`` characters (distinct per turn)."""
    line = f"result {i}: the quick brown fox jumps over the lazy dog number {i}. "
    return (line * (chars // len(line) + 1))[:chars]


def turn(i: int, *, reasoning: bool = False) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"role": "user", "content": f"Question {i}: what about {i}?"}]
    if reasoning:
        items.append({"type": "reasoning", "id": f"rs_{i}", "summary": []})
    items += [
        {
            "type": "function_call",
            "call_id": f"call_h{i}",
            "name": "search",
            "arguments": f'{{"q": "topic {i}"}}',
        },
        {"type": "function_call_output", "call_id": f"call_h{i}", "output": bulky(i)},
        {"role": "assistant", "content": f"Answer {i}: it is about {i}, see the results."},
    ]
    return items


def history(turns: int, **kwargs: Any) -> list[dict[str, Any]]:
    return [item for i in range(turns) for item in turn(i, **kwargs)]


def estimate(model: str, instructions: str | None, items: list[Any], agent: Any = None) -> int:
    """The breakers' estimate of a call's input (tool definitions of ``agent`` included)."""
    tools = 0
    if agent is not None:
        tools = request_tool_tokens(model, agent.tools, [], None)
    return estimate_call_input(model, instructions, items, tool_tokens=tools).tokens


def unpaired(items: list[Any]) -> list[str]:
    """Call ids whose call or output is missing (Responses item shapes)."""
    calls = {
        i["call_id"] for i in items if isinstance(i, dict) and i.get("type") == "function_call"
    }
    outputs = {
        i["call_id"]
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    }
    return sorted(calls ^ outputs)
