"""Claude inside a governed agent run, with prompt caching priced exactly.

An agent on ``AnthropicModel`` looks an order up with a tool and answers; agentbudget
bounds the run (``max_cost_usd``, ``max_tool_calls``) and prices every call, cache reads
and cache writes included.

Offline by default: without ``ANTHROPIC_API_KEY`` the ``anthropic`` client talks to an
in-process fake of the Messages API (``offline_client``), which answers with a tool call
and then with text, and bills the second call's system prompt as a cache read. With a
key, the same code calls Anthropic.

    python examples/claude.py
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx2
from agents import Agent, function_tool, set_tracing_disabled
from anthropic import AsyncAnthropic

import agentbudget as ab
from agentbudget.models import AnthropicModel

INSTRUCTIONS = "You are the order desk. Look orders up before you answer. " * 20


@function_tool
def order_status(order_id: str) -> str:
    """The shipping status of an order."""
    return f"order {order_id} shipped today"


def offline_client() -> AsyncAnthropic:
    """An ``AsyncAnthropic`` whose HTTP goes to a fake Messages API in this process."""
    answers = iter(
        [
            (
                [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "order_status",
                        "input": {"order_id": "A-17"},
                    }
                ],
                "tool_use",
                # the first call writes the system prompt to the cache (5 minutes)
                {
                    "input_tokens": 40,
                    "cache_creation_input_tokens": 1_200,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 1_200,
                        "ephemeral_1h_input_tokens": 0,
                    },
                    "cache_read_input_tokens": 0,
                    "output_tokens": 25,
                },
            ),
            (
                [{"type": "text", "text": "Order A-17 shipped today."}],
                "end_turn",
                # the second call reads it back at a tenth of the input price
                {
                    "input_tokens": 90,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 1_200,
                    "output_tokens": 9,
                },
            ),
        ]
    )

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        content, stop, usage = next(answers)
        message: dict[str, Any] = {
            "id": "msg_offline",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        return httpx2.Response(200, json=message)

    return AsyncAnthropic(
        api_key="offline",
        base_url="http://anthropic.offline",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)),
        max_retries=0,
    )


async def main() -> ab.RunReport:
    if os.environ.get("ANTHROPIC_API_KEY"):
        client = AsyncAnthropic()
    else:
        client = offline_client()
        set_tracing_disabled(True)  # no OpenAI key to export traces with either
    agent = Agent(
        name="order-desk",
        instructions=INSTRUCTIONS,
        model=AnthropicModel("claude-sonnet-4-5", client, cache_control="5m"),
        tools=[order_status],
    )
    guard = ab.Guard(limits=ab.Limits(max_cost_usd="0.10", max_tool_calls=3))
    result = await guard.run(agent, "Where is order A-17?")
    report = ab.report_of(result)
    print(result.final_output)
    for call in report.calls:
        print(
            f"{call.model}: {call.input_tokens} in ({call.cached_input_tokens} cache reads, "
            f"{call.cache_write_tokens} cache writes), {call.output_tokens} out, "
            f"${call.cost_usd}"
        )
    print(f"run: ${report.cost_usd}, {report.tool_calls} tool call(s)")
    return report


if __name__ == "__main__":
    asyncio.run(main())
