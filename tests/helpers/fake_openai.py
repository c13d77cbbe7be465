"""An in-process fake of OpenAI's HTTP API, for driving the SDK's real model classes.

``FakeOpenAI`` answers ``POST /v1/responses`` and ``POST /v1/chat/completions`` in
OpenAI's wire formats, JSON and SSE, through an ``httpx.MockTransport``: the SDK's own
``OpenAIResponsesModel`` and ``OpenAIChatCompletionsModel`` build the requests, the
``openai`` client parses the answers, and nothing leaves the process.

Each request takes the next ``Turn`` of the script (a text answer of a number of
tokens, or a tool call). The server bills input as configured (``input_tokens``), honours
or ignores the output bound the request carries, and reports a usage block (or none).
Like OpenAI, it rejects ``max_tokens`` on Chat Completions for reasoning models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
from openai import AsyncOpenAI

WORD = " word"  # one o200k_base token per repeat


def text_of(tokens: int) -> str:
    """A text of exactly ``tokens`` o200k_base tokens."""
    return "" if tokens <= 0 else "word" + WORD * (tokens - 1)


@dataclass
class Turn:
    """One scripted answer: ``output_tokens`` of text, or a call of ``tool``."""

    output_tokens: int = 20
    tool: str | None = None
    arguments: str = "{}"
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_12h_tokens: int = 0


@dataclass
class FakeOpenAI:
    script: list[Turn] = field(default_factory=list)
    input_tokens: int = 1_000
    """The input the server bills per request (its own count, not the client's)."""
    honour_bound: bool = True
    usage: bool = True
    """Report a usage block (False: omit it, as some compatible servers do)."""
    delta_chars: int | None = None
    """Stream text in pieces of this many characters, splitting words and tokens (None:
    whole words, as OpenAI streams)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every request body received, in order."""
    billed: list[dict[str, int]] = field(default_factory=list)
    """What the server billed each answered request: input and output tokens."""

    # -- clients -----------------------------------------------------------------------

    def client(self) -> AsyncOpenAI:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))
        return AsyncOpenAI(
            api_key="sk-test",
            base_url="http://fake-openai.test/v1",
            http_client=http,
            max_retries=0,
        )

    def model(self, api: str, name: str = "gpt-4o") -> Any:
        if api == "responses":
            return OpenAIResponsesModel(model=name, openai_client=self.client())
        return OpenAIChatCompletionsModel(model=name, openai_client=self.client())

    @property
    def billed_tokens(self) -> int:
        return sum(b["input"] + b["output"] for b in self.billed)

    # -- the server ----------------------------------------------------------------------

    def _next(self) -> Turn:
        index = len(self.requests) - 1
        if index < len(self.script):
            return self.script[index]
        return self.script[-1] if self.script else Turn()

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        if request.url.path.endswith("/responses/compact"):
            return self._compact(body)  # not a turn of the script
        self.requests.append(body)
        if request.url.path.endswith("/responses"):
            return self._responses(body)
        if request.url.path.endswith("/chat/completions"):
            return self._chat(body)
        return httpx.Response(404, json={"error": {"message": "not found"}})

    compact_output_tokens: int = 300
    """What ``POST /v1/responses/compact`` bills as output (its input: ``input_tokens``)."""
    compacted: list[dict[str, Any]] = field(default_factory=list)
    """Every compaction request body received."""

    def _compact(self, body: dict[str, Any]) -> httpx.Response:
        """``responses.compact``: the user messages, then one opaque compaction item."""
        self.compacted.append(body)
        kept = [
            item
            for item in body.get("input") or []
            if isinstance(item, dict) and item.get("role") == "user"
        ]
        output = [
            {
                "id": f"msg_c{n}",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": str(item.get("content"))}],
            }
            for n, item in enumerate(kept)
        ]
        output.append({"id": "cmp_1", "type": "compaction", "encrypted_content": "opaque"})
        usage = {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.compact_output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.compact_output_tokens,
        }
        self.billed.append(
            {"input_tokens": self.input_tokens, "output_tokens": self.compact_output_tokens}
        )
        return httpx.Response(
            200,
            json={
                "id": "cmp_resp_1",
                "object": "response.compaction",
                "created_at": 1_764_633_600,
                "output": output,
                "usage": usage,
            },
        )

    def _cut(self, turn: Turn, bound: int | None) -> tuple[int, bool]:
        """Output tokens produced, and whether the bound cut the answer."""
        wanted = turn.output_tokens if turn.tool is None else _tool_tokens(turn)
        if self.honour_bound and bound is not None and wanted > bound:
            return bound, True
        return wanted, False

    # Responses API ----------------------------------------------------------------------

    def _responses(self, body: dict[str, Any]) -> httpx.Response:
        turn = self._next()
        produced, cut = self._cut(turn, body.get("max_output_tokens"))
        self.billed.append({"input": self.input_tokens, "output": produced})
        if turn.tool is not None and not cut:
            item: dict[str, Any] = {
                "type": "function_call",
                "id": f"fc_{len(self.requests)}",
                "call_id": f"call_{len(self.requests)}",
                "name": turn.tool,
                "arguments": turn.arguments,
                "status": "completed",
            }
        else:
            text = text_of(produced - turn.reasoning_tokens)
            item = {
                "type": "message",
                "id": f"msg_{len(self.requests)}",
                "role": "assistant",
                "status": "incomplete" if cut else "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        response = {
            "id": f"resp_{len(self.requests)}",
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model"),
            "status": "incomplete" if cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "error": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": {},
            "output": [item],
            "parallel_tool_calls": True,
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": body.get("tools") or [],
            "top_p": 1.0,
            "usage": self._responses_usage(turn, produced) if self.usage else None,
        }
        if not body.get("stream"):
            return httpx.Response(200, json=response)
        return _sse(self._response_events(response, item, cut))

    def _responses_usage(self, turn: Turn, produced: int) -> dict[str, Any]:
        details: dict[str, Any] = {
            "cached_tokens": turn.cached_tokens,
            "cache_write_tokens": turn.cache_write_tokens + turn.cache_write_12h_tokens,
        }
        if turn.cache_write_12h_tokens:
            details["cache_write_tokens_details"] = {
                "ttl_12h_tokens": turn.cache_write_12h_tokens,
                "ttl_30m_tokens": turn.cache_write_tokens,
            }
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": details,
            "output_tokens": produced,
            "output_tokens_details": {"reasoning_tokens": min(turn.reasoning_tokens, produced)},
            "total_tokens": self.input_tokens + produced,
        }

    def _response_events(
        self, response: dict[str, Any], item: dict[str, Any], cut: bool
    ) -> Iterator[dict[str, Any]]:
        started = {**response, "status": "in_progress", "output": [], "usage": None}
        seq = iter(range(10_000))
        yield {"type": "response.created", "response": started, "sequence_number": next(seq)}
        shell = {**item, "status": "in_progress"}
        if item["type"] == "message":
            shell["content"] = []
        yield {
            "type": "response.output_item.added",
            "item": shell,
            "output_index": 0,
            "sequence_number": next(seq),
        }
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            yield {
                "type": "response.content_part.added",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "part": part,
                "sequence_number": next(seq),
            }
            for delta in self._deltas(text):
                yield {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": delta,
                    "logprobs": [],
                    "sequence_number": next(seq),
                }
            yield {
                "type": "response.output_text.done",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "text": text,
                "logprobs": [],
                "sequence_number": next(seq),
            }
        else:
            yield {
                "type": "response.function_call_arguments.delta",
                "item_id": item["id"],
                "output_index": 0,
                "delta": item["arguments"],
                "sequence_number": next(seq),
            }
        yield {
            "type": "response.output_item.done",
            "item": item,
            "output_index": 0,
            "sequence_number": next(seq),
        }
        kind = "response.incomplete" if cut else "response.completed"
        yield {"type": kind, "response": response, "sequence_number": next(seq)}

    def _deltas(self, text: str) -> Iterator[str]:
        return _chunks(text) if self.delta_chars is None else _split(text, self.delta_chars)

    # Chat Completions -------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> httpx.Response:
        name = str(body.get("model", ""))
        if "max_tokens" in body and name.startswith(("o1", "o3", "o4", "gpt-5")):
            self.billed.append({"input": 0, "output": 0})
            return httpx.Response(
                400,
                json={
                    "error": {
                        "message": "Unsupported parameter: 'max_tokens' is not supported with "
                        "this model. Use 'max_completion_tokens' instead.",
                        "type": "invalid_request_error",
                        "param": "max_tokens",
                        "code": "unsupported_parameter",
                    }
                },
            )
        turn = self._next()
        bound = body.get("max_completion_tokens", body.get("max_tokens"))
        produced, cut = self._cut(turn, bound)
        self.billed.append({"input": self.input_tokens, "output": produced})
        usage = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": produced,
            "total_tokens": self.input_tokens + produced,
            "prompt_tokens_details": {
                "cached_tokens": turn.cached_tokens,
                "cache_write_tokens": turn.cache_write_tokens,
            },
            "completion_tokens_details": {"reasoning_tokens": min(turn.reasoning_tokens, produced)},
        }
        tool_calls = None
        content: str | None = None
        if turn.tool is not None and not cut:
            tool_calls = [
                {
                    "id": f"call_{len(self.requests)}",
                    "type": "function",
                    "function": {"name": turn.tool, "arguments": turn.arguments},
                }
            ]
            finish = "tool_calls"
        else:
            content = text_of(produced - turn.reasoning_tokens)
            finish = "length" if cut else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if tool_calls:
                message["tool_calls"] = tool_calls
            completion = {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": name,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            }
            if self.usage:
                completion["usage"] = usage
            return httpx.Response(200, json=completion)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _sse(
            self._chat_chunks(name, content, tool_calls, finish, usage, include_usage), done=True
        )

    def _chat_chunks(
        self,
        name: str,
        content: str | None,
        tool_calls: list[dict[str, Any]] | None,
        finish: str,
        usage: dict[str, Any],
        include_usage: bool,
    ) -> Iterator[dict[str, Any]]:
        base = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": name,
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        yield chunk({"role": "assistant", "content": ""})
        for delta in self._deltas(content or ""):
            yield chunk({"content": delta})
        for index, call in enumerate(tool_calls or []):
            yield chunk({"tool_calls": [{"index": index, **call}]})
        yield chunk({}, finish)
        if include_usage and self.usage:
            yield {**base, "choices": [], "usage": usage}


def _split(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _tool_tokens(turn: Turn) -> int:
    return 10 + len(turn.arguments) // 4


def _chunks(text: str, words: int = 40) -> Iterator[str]:
    """Deltas of whole words, so their token counts add up to the text's."""
    parts = text.split(" ")
    for start in range(0, len(parts), words):
        piece = " ".join(parts[start : start + words])
        yield piece if start == 0 else " " + piece


def _sse(events: Iterator[dict[str, Any]], *, done: bool = False) -> httpx.Response:
    lines: list[str] = []
    for event in events:
        if "type" in event:
            lines.append(f"event: {event['type']}\n")
        lines.append(f"data: {json.dumps(event)}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content="".join(lines).encode(),
    )
