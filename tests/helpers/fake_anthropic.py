"""An in-process fake of Anthropic's Messages API, for driving ``AnthropicModel``.

``FakeAnthropic`` answers ``POST /v1/messages`` (JSON, or SSE when the request says
``stream``) and ``POST /v1/messages/count_tokens`` through an ``httpx2.MockTransport``
(the transport of the httpx fork the ``anthropic`` package is built on): the real
``anthropic.AsyncAnthropic`` client builds the requests and parses the answers, and
nothing leaves the process.

Each ``POST /v1/messages`` takes the next ``Turn`` of the script: text of a number of
tokens, tool calls, thinking, cache reads and writes, or an HTTP error. Like Anthropic,
the server reports ``input_tokens`` without the cache reads and writes, honours the
request's ``max_tokens`` (cutting with ``stop_reason="max_tokens"``) and reports usage
in ``message_start`` and ``message_delta`` when streaming.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from anthropic import AsyncAnthropic

from agentbudget.models import AnthropicModel

WORD = " word"  # one o200k_base token per repeat


def text_of(tokens: int) -> str:
    return "" if tokens <= 0 else "word" + WORD * (tokens - 1)


@dataclass
class Turn:
    """One scripted answer (or an error status with ``error``)."""

    output_tokens: int = 20
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    thinking_tokens: int = 0
    input_tokens: int | None = None
    """Uncached input, as Anthropic reports it (None: the server's default)."""
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    error: int | None = None
    """Answer with this HTTP status (429, 529, ...) instead."""
    final_tool_input: dict[str, Any] | None = None
    """Answer with the forced ``final_output`` tool (structured output by tool)."""
    text: str | None = None
    """Answer with this text instead of ``output_tokens`` words."""


@dataclass
class FakeAnthropic:
    script: list[Turn] = field(default_factory=list)
    input_tokens: int = 1_000
    count: int = 1_234
    """What ``count_tokens`` answers."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    counted: list[dict[str, Any]] = field(default_factory=list)
    billed: list[dict[str, int]] = field(default_factory=list)
    """Each answered request's usage block, as the server reported it."""

    def client(self, max_retries: int = 0) -> AsyncAnthropic:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))
        return AsyncAnthropic(
            api_key="sk-ant-test",
            base_url="http://fake-anthropic.test",
            http_client=http,
            max_retries=max_retries,
        )

    def model(self, name: str = "claude-sonnet-4-5", **options: Any) -> AnthropicModel:
        return AnthropicModel(name, self.client(options.pop("max_retries", 0)), **options)

    # -- the server ----------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/count_tokens"):
            self.counted.append(body)
            return httpx.Response(200, json={"input_tokens": self.count})
        self.requests.append(body)
        turn = self.script.pop(0) if self.script else Turn()
        if turn.error is not None:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(turn.error, "api_error")
            return httpx.Response(
                turn.error,
                headers={"retry-after-ms": "1", "request-id": "req_err"},
                json={"type": "error", "error": {"type": kind, "message": kind}},
            )
        blocks, stop, output = self._answer(body, turn)
        usage: dict[str, Any] = {
            "input_tokens": turn.input_tokens
            if turn.input_tokens is not None
            else self.input_tokens,
            "cache_read_input_tokens": turn.cache_read,
            "cache_creation_input_tokens": turn.cache_write_5m + turn.cache_write_1h,
            "cache_creation": {
                "ephemeral_5m_input_tokens": turn.cache_write_5m,
                "ephemeral_1h_input_tokens": turn.cache_write_1h,
            },
            "output_tokens": output,
        }
        self.billed.append(usage)
        message = {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return httpx.Response(200, json=message)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=self._sse(message).encode("utf-8"),
        )

    def _answer(self, body: dict[str, Any], turn: Turn) -> tuple[list[dict[str, Any]], str, int]:
        """Content blocks, stop reason and output tokens, cut at the request's max_tokens."""
        room = int(body["max_tokens"])
        blocks: list[dict[str, Any]] = []
        used = 0
        if turn.thinking_tokens:
            thought = min(turn.thinking_tokens, room)
            blocks.append(
                {"type": "thinking", "thinking": text_of(thought), "signature": "sig-abc"}
            )
            used += thought
        if used >= room:
            return blocks, "max_tokens", used
        if turn.final_tool_input is not None:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": "toolu_final",
                    "name": "final_output",
                    "input": turn.final_tool_input,
                }
            )
            return blocks, "tool_use", used + 10
        if turn.tools:
            if turn.text is not None:  # a preamble before the tool calls
                blocks.append({"type": "text", "text": turn.text})
            for number, (name, arguments) in enumerate(turn.tools, 1):
                blocks.append(
                    {"type": "tool_use", "id": f"toolu_{number}", "name": name, "input": arguments}
                )
            return blocks, "tool_use", used + 10 * len(turn.tools)
        if turn.text is not None:
            blocks.append({"type": "text", "text": turn.text})
            return blocks, "end_turn", used + turn.output_tokens
        text = min(turn.output_tokens, room - used)
        blocks.append({"type": "text", "text": text_of(text)})
        stop = "max_tokens" if turn.output_tokens > room - used else "end_turn"
        return blocks, stop, used + text

    def _sse(self, message: dict[str, Any]) -> str:
        events: list[dict[str, Any]] = []
        usage = dict(message["usage"])
        start_usage = {**usage, "output_tokens": 1}
        events.append(
            {
                "type": "message_start",
                "message": {
                    **message,
                    "content": [],
                    "stop_reason": None,
                    "usage": start_usage,
                },
            }
        )
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
                words = block["text"].split(" ")
                for number, word in enumerate(words):
                    piece = word if number == 0 else " " + word
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        }
                    )
            elif block["type"] == "thinking":
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    }
                )
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                    }
                )
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block["signature"]},
                    }
                )
            elif block["type"] == "tool_use":
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {**block, "input": {}},
                    }
                )
                arguments = json.dumps(block["input"])
                for cut in range(0, len(arguments), 7):  # split mid-token, as Claude streams
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": arguments[cut : cut + 7],
                            },
                        }
                    )
            events.append({"type": "content_block_stop", "index": index})
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {
                    "output_tokens": usage["output_tokens"],
                    "input_tokens": usage["input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                },
            }
        )
        events.append({"type": "message_stop"})
        return "".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events)


def billed_tokens(server: FakeAnthropic) -> int:
    """Every token the server billed (input with cache reads and writes, and output)."""
    return sum(
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["output_tokens"]
        for usage in server.billed
    )
