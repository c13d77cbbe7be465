"""Model routing: a local Ollama model, a cheap cloud model and a strong one, offline.

A ``HeuristicRouter`` with three tiers sends each request, once per run, to the cheapest
tier that can do it: a local model at $0 (Ollama's OpenAI-compatible endpoint), then
gpt-4o-mini, then gpt-4o. Every run's report says where it went and why.

Offline by default: without ``OPENAI_API_KEY`` both the cloud and the "Ollama" endpoints
are in-process fakes of OpenAI's wire format. With a key, the cloud calls go to OpenAI and
the local ones to an Ollama server at http://localhost:11434 (``ollama pull llama3.1``).

    python examples/model_routing.py
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx2
from agents import Agent, OpenAIResponsesModel, set_tracing_disabled
from openai import AsyncOpenAI

import agentbudget as ab
from agentbudget.routing import HeuristicRouter, Tier, local_model

REQUESTS = [
    "Translate 'good morning' into Spanish.",
    "Write a short poem about the sea for my mother's birthday card.",
    "Why does our checkout service deadlock under load, and how would you redesign the "
    "locking so that two transfers in opposite directions never block each other?",
]


def offline_client() -> AsyncOpenAI:
    """An ``AsyncOpenAI`` whose Responses and Chat Completions endpoints are fakes."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        text = f"(an answer from {body['model']})"
        if request.url.path.endswith("/chat/completions"):
            return httpx2.Response(
                200,
                json={
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 60, "completion_tokens": 40, "total_tokens": 100},
                },
            )
        message: dict[str, Any] = {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        return httpx2.Response(
            200,
            json={
                "id": "resp_1",
                "object": "response",
                "created_at": 0,
                "model": body["model"],
                "status": "completed",
                "output": [message],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": 60,
                    "output_tokens": 40,
                    "total_tokens": 100,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            },
        )

    return AsyncOpenAI(
        api_key="offline",
        base_url="http://openai.offline/v1",
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)),
        max_retries=0,
    )


async def main() -> list[tuple[str | None, str, str, bool]]:
    """Returns one row per request: (tier, model, cost, local)."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    cloud = AsyncOpenAI() if online else offline_client()
    if not online:
        set_tracing_disabled(True)
    ollama = local_model(
        "llama3.1", context_window=8_192, openai_client=None if online else offline_client()
    )
    router = HeuristicRouter(
        tiers=[Tier("local", ollama), Tier("cheap", "gpt-4o-mini"), Tier("strong", "gpt-4o")],
        thresholds=(-0.5, 1.0),
    )
    guard = ab.Guard(router=router)
    # The agent's own model: the router's model names are served by the same client.
    agent = Agent(
        name="assistant",
        instructions="Answer helpfully.",
        model=OpenAIResponsesModel("gpt-4o", cloud),
    )
    rows = []
    for text in REQUESTS:
        report = ab.report_of(await guard.run(agent, text))
        route = report.route
        assert route is not None
        call = report.calls[0]
        rows.append((route.tier, call.model, str(report.cost_usd), call.local))
        print(f"{route.tier:>6} {call.model:<12} ${report.cost_usd}  {text[:50]!r}")
        print(f"       why: {route.reason}")
    return rows


if __name__ == "__main__":
    asyncio.run(main())
