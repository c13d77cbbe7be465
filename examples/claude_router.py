"""Routing between providers: simple work to gpt-4o-mini, complex work to Claude.

A ``HeuristicRouter`` whose strong tier is an ``AnthropicModel`` (a ``Model`` instance,
so the route changes provider) and whose cheap tier is OpenAI's gpt-4o-mini. Each run
goes to one of them, once, and its report prices the calls with the right table entry.

Offline by default: without ``OPENAI_API_KEY`` and ``ANTHROPIC_API_KEY`` both providers
are in-process fakes of their wire formats. With both keys, the same code calls them.

    python examples/claude_router.py
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx2
from agents import Agent, OpenAIResponsesModel, set_tracing_disabled
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

import agentbudget as ab
from agentbudget.models import AnthropicModel
from agentbudget.routing import HeuristicRouter

REQUESTS = [
    "Can I get an invoice in euros instead of dollars?",
    "Review this login handler for security issues and explain how an attacker would "
    "exploit each one: it builds SQL with an f-string and compares MD5 password hashes.",
]


def _transport(answer: Any) -> httpx2.AsyncClient:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=answer(json.loads(request.content)))

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handle))


def openai_answer(body: dict[str, Any]) -> dict[str, Any]:
    text = f"(an answer from {body['model']})"
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "model": body["model"],
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 80,
            "output_tokens": 30,
            "total_tokens": 110,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def anthropic_answer(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": f"(an answer from {body['model']})"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 80, "output_tokens": 300},
    }


async def main() -> list[tuple[str | None, str, str]]:
    """Returns one row per request: (tier, model, cost)."""
    online = bool(os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY"))
    if online:
        openai, anthropic = AsyncOpenAI(), AsyncAnthropic()
    else:
        set_tracing_disabled(True)
        openai = AsyncOpenAI(
            api_key="offline",
            base_url="http://openai.offline/v1",
            http_client=_transport(openai_answer),
            max_retries=0,
        )
        anthropic = AsyncAnthropic(
            api_key="offline",
            base_url="http://anthropic.offline",
            http_client=_transport(anthropic_answer),
            max_retries=0,
        )
    router = HeuristicRouter(
        simple=OpenAIResponsesModel("gpt-4o-mini", openai),
        complex=AnthropicModel("claude-sonnet-4-5", anthropic),
    )
    guard = ab.Guard(router=router, limits=ab.Limits(max_cost_usd="0.50"))
    agent = Agent(name="support", instructions="Answer the customer.", model="gpt-4o")
    rows = []
    for text in REQUESTS:
        report = ab.report_of(await guard.run(agent, text))
        assert report.route is not None
        call = report.calls[0]
        rows.append((report.route.tier, call.model, str(call.cost_usd)))
        print(f"{report.route.tier:>7} -> {call.model:<18} ${call.cost_usd}  {text[:48]!r}")
    return rows


if __name__ == "__main__":
    asyncio.run(main())
