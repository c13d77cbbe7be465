"""``AnthropicModel``: Claude inside agent runs, through the ``anthropic`` package.

An ``agents.Model`` over ``anthropic.AsyncAnthropic``'s Messages API. The SDK's input
items are turned into Chat Completions messages by the SDK's own converter (which keeps
Claude's thinking blocks for replay) and from there into Messages API turns; answers
come back as the SDK's Responses items, and streams as the SDK's Responses stream
events, so text, thinking and tool-argument deltas stream and agentbudget's breakers
count them. Usage is mapped in one place, ``TokenUsage.from_anthropic``: Anthropic's
``input_tokens`` excludes cache reads and writes, agentbudget's includes them.

The output bound: Anthropic requires ``max_tokens``. It is ``ModelSettings.max_tokens``
(which agentbudget lowers to what the limits leave), else a bound passed in
``extra_args``, else the model's ``max_tokens`` (8,192 by default). A response cut there
(``stop_reason="max_tokens"``) with something in it is returned as it is, as the SDK's
Chat Completions model does with ``finish_reason="length"``; cut with nothing in it, it
raises ``ModelBehaviorError`` from a frame that holds the paid response as an
``incomplete`` Responses ``Response``, which agentbudget charges.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

from agents import (
    Handoff,
    Model,
    ModelBehaviorError,
    ModelProvider,
    ModelSettings,
    ModelTracing,
    MultiProvider,
    Tool,
    UserError,
)
from agents.agent_output import AgentOutputSchemaBase
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.chatcmpl_converter import Converter
from agents.models.fake_id import FAKE_RESPONSES_ID
from agents.retry import ModelRetryAdvice, ModelRetryAdviceRequest
from agents.tool import FunctionTool
from agents.tracing import generation_span
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningTextDeltaEvent,
    ResponseTextDeltaEvent,
    ResponseUsage,
)
from openai.types.responses.response_incomplete_event import ResponseIncompleteEvent
from openai.types.responses.response_reasoning_item import Content as ReasoningContent

from .._sdk import provider_retries_disabled
from ..errors import ConfigurationError
from ..tokens import TokenEstimate, estimate_call_input, request_tool_tokens
from ..usage import TokenUsage

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from openai.types.responses.response_prompt_param import ResponsePromptParam

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicModel",
    "AnthropicProvider",
    "set_default_anthropic_client",
]

logger = logging.getLogger("agentbudget")

DEFAULT_MAX_TOKENS = 8_192
"""The output bound sent when neither the call's settings nor the model give one
(Anthropic requires ``max_tokens`` on every request)."""

PREFIX = "anthropic/"
STRUCTURED_TOOL = "final_output"
"""The forced tool that carries a structured answer (``structured_output="tool"``)."""

_BOUND_KEYS = ("max_tokens", "max_output_tokens", "max_completion_tokens")
_MIN_THINKING_BUDGET = 1_024
_CACHE_TTLS = ("5m", "1h")
_COUNT_CACHE_SIZE = 1_024


def _anthropic() -> Any:
    """The ``anthropic`` package, or a ``ConfigurationError`` naming the extra."""
    try:
        import anthropic
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigurationError(
            'AnthropicModel needs the anthropic package: pip install "agentbudget-sdk[anthropic]"'
        ) from exc
    return anthropic


_default_client: AsyncAnthropic | None = None


def set_default_anthropic_client(client: AsyncAnthropic | None) -> None:
    """The client every ``AnthropicModel`` built without one uses (None: one built from
    the environment, ``ANTHROPIC_API_KEY``), as the SDK's ``set_default_openai_client``.

    Raises:
        ConfigurationError: ``client`` is not an ``anthropic.AsyncAnthropic``.
    """
    global _default_client
    if client is not None and not isinstance(client, _anthropic().AsyncAnthropic):
        raise ConfigurationError(
            f"client must be an anthropic.AsyncAnthropic, got {type(client).__name__}"
        )
    _default_client = client


def bare_name(model: str) -> str:
    """``"anthropic/claude-sonnet-4-5"`` -> ``"claude-sonnet-4-5"``."""
    return model[len(PREFIX) :] if model.lower().startswith(PREFIX) else model


class AnthropicModel(Model):
    """Claude through ``anthropic.AsyncAnthropic``'s Messages API, as an ``agents.Model``.

    Args:
        model: the Claude model (``"claude-sonnet-4-5"``; an ``"anthropic/"`` prefix is
            dropped).
        client: the ``AsyncAnthropic`` client (default: one built from the environment,
            ``ANTHROPIC_API_KEY``).
        cache_control: ``"5m"`` or ``"1h"`` puts a prompt-cache breakpoint of that
            lifetime on the system prompt and on the last tool definition; None (the
            default) sends none.
        max_tokens: the output bound when a call's ``ModelSettings`` carries none.
        thinking_budget: extended thinking with this many budget tokens (at least
            1,024); None leaves thinking off (``extra_args={"thinking": ...}`` also works).
            A lower output bound (a limit's) shrinks the budget to fit under it, or turns
            thinking off for the call when less than 1,024 tokens would remain.
        structured_output: how an agent's ``output_type`` is asked for: ``"json_schema"``
            (Anthropic's structured outputs, ``output_config.format``) or ``"tool"`` (a
            forced tool whose input is the answer, for models without structured outputs;
            not combinable with thinking).
        count_tokens: ``count_input_tokens`` asks the API (``messages.count_tokens``,
            cached per request content) instead of estimating offline.

    Raises:
        ConfigurationError: a bad argument, or the ``anthropic`` package is missing.
    """

    def __init__(
        self,
        model: str,
        client: AsyncAnthropic | None = None,
        *,
        cache_control: Literal["5m", "1h"] | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        thinking_budget: int | None = None,
        structured_output: Literal["json_schema", "tool"] = "json_schema",
        count_tokens: bool = False,
    ) -> None:
        anthropic = _anthropic()
        if not isinstance(model, str) or not bare_name(model).strip():
            raise ConfigurationError(f"AnthropicModel needs a model name, got {model!r}")
        if client is not None and not isinstance(client, anthropic.AsyncAnthropic):
            raise ConfigurationError(
                f"client must be an anthropic.AsyncAnthropic, got {type(client).__name__}"
            )
        if cache_control is not None and cache_control not in _CACHE_TTLS:
            raise ConfigurationError(
                f"cache_control must be None, '5m' or '1h', got {cache_control!r}"
            )
        if not _positive_int(max_tokens):
            raise ConfigurationError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if thinking_budget is not None and (
            not _positive_int(thinking_budget) or thinking_budget < _MIN_THINKING_BUDGET
        ):
            raise ConfigurationError(
                f"thinking_budget must be an int of at least {_MIN_THINKING_BUDGET}, "
                f"got {thinking_budget!r}"
            )
        if thinking_budget is not None and thinking_budget >= max_tokens:
            raise ConfigurationError(
                f"thinking_budget ({thinking_budget}) must be below max_tokens ({max_tokens})"
            )
        if structured_output not in ("json_schema", "tool"):
            raise ConfigurationError(
                f"structured_output must be 'json_schema' or 'tool', got {structured_output!r}"
            )
        if structured_output == "tool" and thinking_budget is not None:
            raise ConfigurationError(
                "structured_output='tool' forces a tool, which Anthropic rejects with "
                "thinking: use structured_output='json_schema' or no thinking_budget"
            )
        self.model = bare_name(model)
        self.cache_control = cache_control
        self.max_tokens = max_tokens
        self.thinking_budget = thinking_budget
        self.structured_output = structured_output
        self.count_tokens = count_tokens
        self._client: AsyncAnthropic | None = client
        self._counted: OrderedDict[str, int] = OrderedDict()
        self._warned_state = False

    @property
    def default_max_tokens(self) -> int:
        """The bound every call without one is sent with (agentbudget plans with it)."""
        return self.max_tokens

    # -- the client ------------------------------------------------------------------

    def _get_client(self) -> AsyncAnthropic:
        if self._client is None:
            self._client = _default_client or cast("AsyncAnthropic", _anthropic().AsyncAnthropic())
        if provider_retries_disabled():
            # the runner retries this call itself (ModelSettings.retry): no second layer
            return self._client.with_options(max_retries=0)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        """Anthropic's retry rules for the SDK's runner: connection errors, timeouts,
        408, 409, 429, 5xx and 529 (overloaded) are worth retrying, after ``retry-after``
        when the server sent one; other errors are not."""
        anthropic = _anthropic()
        error = request.error
        if isinstance(error, anthropic.APIConnectionError):
            return ModelRetryAdvice(suggested=True, reason=str(error))
        if isinstance(error, anthropic.APIStatusError):
            retry_after = _retry_after(error.response.headers)
            header = (error.response.headers.get("x-should-retry") or "").lower()
            if header in ("true", "false"):
                return ModelRetryAdvice(
                    suggested=header == "true", retry_after=retry_after, reason=str(error)
                )
            status = error.status_code
            return ModelRetryAdvice(
                suggested=status in (408, 409, 429) or status >= 500,
                retry_after=retry_after,
                reason=str(error),
            )
        return None

    # -- the Model interface ---------------------------------------------------------

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> ModelResponse:
        self._warn_state(previous_response_id, conversation_id, prompt)
        body, options = self.request(
            system_instructions, input, model_settings, tools, output_schema, handoffs
        )
        with generation_span(
            model=self.model,
            model_config=_trace_config(body),
            disabled=tracing.is_disabled(),
        ) as span:
            client = self._get_client()
            message = await client.messages.create(**_call(client.messages.create, body, options))
            usage = TokenUsage.from_anthropic(message.usage)
            span.span_data.usage = {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
            }
            output = self._output_items([_block_dict(block) for block in message.content])
            if message.stop_reason == "max_tokens" and not _has_answer(output):
                # the paid answer stays in this frame for agentbudget to charge
                response = _response(self.model, output, usage, incomplete=True)  # noqa: F841
                raise ModelBehaviorError(
                    f"Claude's answer was cut at max_tokens={body['max_tokens']} before any "
                    "text or tool call"
                )
            if message.stop_reason == "refusal" and not _has_answer(output):
                output.append(_message([], refusal="Claude declined to answer."))
            if tracing.include_data():
                span.span_data.output = [item.model_dump() for item in output]
            return ModelResponse(
                output=output,
                usage=usage.to_agents_usage(),
                response_id=None,
                request_id=getattr(message, "_request_id", None),
                raw_usage=(
                    message.usage.model_dump(mode="json", exclude_none=True)
                    if model_settings.preserve_raw_usage is True
                    else None
                ),
            )

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        self._warn_state(previous_response_id, conversation_id, prompt)
        body, options = self.request(
            system_instructions, input, model_settings, tools, output_schema, handoffs
        )
        with generation_span(
            model=self.model,
            model_config=_trace_config(body),
            disabled=tracing.is_disabled(),
        ) as span:
            client = self._get_client()
            stream = await client.messages.create(
                **_call(client.messages.create, {**body, "stream": True}, options)
            )
            streamer = _Streamer(self)
            try:
                async for event in stream:
                    for converted in streamer.feed(_block_dict(event)):
                        yield converted
                usage = streamer.usage
                span.span_data.usage = {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                }
                output = streamer.output()
                if streamer.stop_reason == "max_tokens" and not _has_answer(output):
                    response = _response(self.model, output, usage, incomplete=True)
                    yield ResponseIncompleteEvent(
                        response=response,
                        type="response.incomplete",
                        sequence_number=streamer.next_sequence(),
                    )
                    raise ModelBehaviorError(
                        f"Claude's answer was cut at max_tokens={body['max_tokens']} before "
                        "any text or tool call"
                    )
                if streamer.stop_reason == "refusal" and not _has_answer(output):
                    output.append(_message([], refusal="Claude declined to answer."))
                yield ResponseCompletedEvent(
                    response=_response(self.model, output, usage),
                    type="response.completed",
                    sequence_number=streamer.next_sequence(),
                )
            finally:
                await stream.close()

    # -- the request -----------------------------------------------------------------

    def request(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        settings: ModelSettings,
        tools: Iterable[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: Iterable[Handoff[Any, Any]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The Messages API request for one call: ``(body, client options)``."""
        extra = dict(settings.extra_args or {})
        bounds = [settings.max_tokens] if settings.max_tokens is not None else []
        for key in _BOUND_KEYS:
            value = extra.pop(key, None)
            if _positive_int(value):
                bounds.append(value)
        max_tokens = min(bounds) if bounds else self.max_tokens
        system, messages = self.messages(system_instructions, input)
        body: dict[str, Any] = {"model": bare_name(self.model), "max_tokens": max_tokens}
        if system:
            body["system"] = system
        body["messages"] = messages
        definitions = [_tool_definition(tool) for tool in tools]
        definitions += [_handoff_definition(handoff) for handoff in handoffs]
        forced: dict[str, Any] | None = None
        if output_schema is not None and not output_schema.is_plain_text():
            schema = output_schema.json_schema()
            if self.structured_output == "tool":
                definitions.append(
                    {
                        "name": STRUCTURED_TOOL,
                        "description": "Give the final answer in this shape.",
                        "input_schema": schema,
                    }
                )
                forced = {"type": "tool", "name": STRUCTURED_TOOL}
            else:
                body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        if definitions:
            if self.cache_control is not None:
                definitions[-1] = {**definitions[-1], "cache_control": self._cache_block()}
            body["tools"] = definitions
            choice = forced or _tool_choice(settings.tool_choice)
            if settings.parallel_tool_calls is False and (choice or {}).get("type") != "none":
                choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
            if choice is not None:
                body["tool_choice"] = choice
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        thinking = extra.pop("thinking", None)
        if thinking is None and self.thinking_budget is not None:
            thinking = {"type": "enabled", "budget_tokens": self.thinking_budget}
        thinking = _fit_thinking(thinking, max_tokens)
        if thinking is not None:
            body["thinking"] = thinking
        body.update(extra)
        options: dict[str, Any] = {}
        if settings.extra_headers:
            options["extra_headers"] = dict(settings.extra_headers)
        if settings.extra_query:
            options["extra_query"] = dict(settings.extra_query)
        if isinstance(settings.extra_body, Mapping):
            options["extra_body"] = {
                key: max_tokens if key in _BOUND_KEYS else value
                for key, value in settings.extra_body.items()
            }
        if settings.timeout is not None:
            options["timeout"] = settings.timeout
        return body, options

    def messages(
        self, system_instructions: str | None, input: str | list[TResponseInputItem]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(system blocks, Messages API turns)`` for the SDK's input items."""
        chat = Converter.items_to_messages(
            input,
            model=self.model,
            preserve_thinking_blocks=True,
            preserve_tool_output_all_content=True,
        )
        system_texts = [system_instructions] if system_instructions else []
        turns: list[dict[str, Any]] = []
        for message in cast(list[dict[str, Any]], chat):
            role = message["role"]
            if role in ("system", "developer"):
                system_texts.append(_plain_text(message.get("content")))
                continue
            if role == "user":
                blocks = _user_blocks(message.get("content"))
            elif role == "assistant":
                blocks = _assistant_blocks(message)
            elif role == "tool":
                blocks = [
                    {
                        "type": "tool_result",
                        "tool_use_id": message["tool_call_id"],
                        "content": _tool_result_content(message.get("content")),
                    }
                ]
                role = "user"
            else:
                raise UserError(f"AnthropicModel cannot send a {role!r} message")
            if not blocks:
                continue
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        for turn in turns:
            if turn["role"] == "user":  # tool results first, as Anthropic requires
                turn["content"].sort(key=lambda block: block["type"] != "tool_result")
        system: list[dict[str, Any]] = [
            {"type": "text", "text": text} for text in system_texts if text
        ]
        if system and self.cache_control is not None:
            system[-1]["cache_control"] = self._cache_block()
        return system, turns

    def _cache_block(self) -> dict[str, str]:
        return {"type": "ephemeral", "ttl": cast(str, self.cache_control)}

    # -- the answer ------------------------------------------------------------------

    def _output_items(self, blocks: list[dict[str, Any]]) -> list[ResponseOutputItem]:
        """The SDK's output items for a message's content blocks, in order."""
        items: list[ResponseOutputItem] = []
        thinking: list[dict[str, Any]] = []
        texts: list[str] = []

        def flush_texts() -> None:
            if texts:
                items.append(_message(list(texts)))
                texts.clear()

        for block in blocks:
            kind = block.get("type")
            if kind in ("thinking", "redacted_thinking"):
                thinking.append(block)
                continue
            if thinking:
                items.append(self._reasoning(thinking))
                thinking = []
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use":
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                if block.get("name") == STRUCTURED_TOOL and self.structured_output == "tool":
                    texts.append(arguments)
                    continue
                flush_texts()
                items.append(
                    ResponseFunctionToolCall(
                        id=FAKE_RESPONSES_ID,
                        call_id=str(block.get("id")),
                        name=str(block.get("name")),
                        arguments=arguments,
                        type="function_call",
                        status="completed",
                    )
                )
        if thinking:
            items.append(self._reasoning(thinking))
        flush_texts()
        return items

    def _reasoning(self, blocks: list[dict[str, Any]]) -> ResponseReasoningItem:
        kept = [
            {key: value for key, value in block.items() if key != "citations"} for block in blocks
        ]
        item = ResponseReasoningItem(
            id=FAKE_RESPONSES_ID,
            summary=[],
            content=[
                ReasoningContent(text=block["thinking"], type="reasoning_text")
                for block in kept
                if block.get("thinking")
            ],
            type="reasoning",
        )
        signatures = [block["signature"] for block in kept if block.get("signature")]
        if signatures:
            item.encrypted_content = "\n".join(signatures)
        # the SDK's converter replays these blocks to the same model (thinking with tools)
        item.provider_data = {"model": self.model, "thinking_blocks": kept}  # type: ignore[attr-defined]
        return item

    # -- token counts ----------------------------------------------------------------

    async def count_input_tokens(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        tools: Iterable[Tool] = (),
        handoffs: Iterable[Handoff[Any, Any]] = (),
        output_schema: AgentOutputSchemaBase | None = None,
    ) -> TokenEstimate:
        """The input tokens of a call: Anthropic's count when the model was built with
        ``count_tokens=True`` (``messages.count_tokens``, cached per request content),
        else agentbudget's offline estimate (``approximate=True``: o200k_base times
        ``APPROXIMATION_FACTOR["anthropic"]``)."""
        tools, handoffs = list(tools), list(handoffs)
        if not self.count_tokens:
            return estimate_call_input(
                self.model,
                system_instructions,
                input,
                tool_tokens=request_tool_tokens(self.model, tools, handoffs, output_schema),
            )
        body, _ = self.request(
            system_instructions, input, ModelSettings(), tools, output_schema, handoffs
        )
        body.pop("max_tokens", None)
        key = hashlib.sha256(
            json.dumps(body, sort_keys=True, default=str).encode("utf-8")
        ).hexdigest()
        tokens = self._counted.get(key)
        if tokens is None:
            client = self._get_client()
            count = client.messages.count_tokens
            counted = await count(**_call(count, body, {}))
            tokens = int(counted.input_tokens)
            self._counted[key] = tokens
            if len(self._counted) > _COUNT_CACHE_SIZE:
                self._counted.popitem(last=False)
        else:
            self._counted.move_to_end(key)
        return TokenEstimate(tokens=tokens, encoding="anthropic", approximate=False)

    def _warn_state(self, previous: str | None, conversation: str | None, prompt: Any) -> None:
        if (previous or conversation or prompt) and not self._warned_state:
            self._warned_state = True
            logger.warning(
                "AnthropicModel ignores previous_response_id, conversation_id and prompt "
                "(OpenAI Responses features): the whole conversation is sent every call"
            )


class AnthropicProvider(ModelProvider):
    """Serves ``"anthropic/<model>"`` (and bare ``"claude-..."``) names as
    ``AnthropicModel``; every other name goes to ``fallback`` (the SDK's
    ``MultiProvider`` by default), so one ``RunConfig(model_provider=AnthropicProvider())``
    runs OpenAI and Claude agents side by side, and ``Downgrade("anthropic/...")`` works.

    Args:
        client: the ``AsyncAnthropic`` client shared by the models it builds.
        fallback: the provider for other names.
        **model_options: passed to every ``AnthropicModel`` (``cache_control``,
            ``max_tokens``, ``thinking_budget``, ...).
    """

    def __init__(
        self,
        client: AsyncAnthropic | None = None,
        *,
        fallback: ModelProvider | None = None,
        **model_options: Any,
    ) -> None:
        _anthropic()
        self.client = client
        self.fallback = fallback if fallback is not None else MultiProvider()
        self.model_options = model_options
        self._models: dict[str, AnthropicModel] = {}
        if model_options:
            AnthropicModel("claude-check", client, **model_options)  # validate now

    def get_model(self, model_name: str | None) -> Model:
        if model_name is not None and (
            model_name.lower().startswith(PREFIX) or model_name.lower().startswith("claude")
        ):
            name = bare_name(model_name)
            model = self._models.get(name)
            if model is None:
                model = AnthropicModel(name, self.client, **self.model_options)
                self._models[name] = model
            return model
        return self.fallback.get_model(model_name)

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.close()
        closer = getattr(self.fallback, "aclose", None)
        if closer is not None:
            await closer()


# -- streaming ---------------------------------------------------------------------------


class _Streamer:
    """Turns Anthropic's SSE events into the SDK's Responses stream events."""

    def __init__(self, model: AnthropicModel) -> None:
        self.model = model
        self.sequence = 0
        self.started = False
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json: dict[int, list[str]] = {}
        self.positions: dict[int, int] = {}
        """Anthropic block index -> output_index of the item streamed for it."""
        self.outputs = 0
        self.usage = TokenUsage()
        self.raw_usage: dict[str, Any] = {}
        self.stop_reason: str | None = None

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def output(self) -> list[ResponseOutputItem]:
        blocks = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            if block.get("type") == "tool_use" and index in self.json:
                text = "".join(self.json[index])
                try:
                    block["input"] = json.loads(text) if text.strip() else {}
                except json.JSONDecodeError:
                    block["input"] = {}  # cut mid-arguments (max_tokens)
            blocks.append(block)
        return self.model._output_items(blocks)

    def _merge_usage(self, usage: Mapping[str, Any] | None) -> None:
        if usage:
            self.raw_usage.update({k: v for k, v in usage.items() if v is not None})
            self.usage = TokenUsage.from_anthropic(self.raw_usage)

    def feed(self, event: dict[str, Any]) -> Iterable[TResponseStreamEvent]:
        kind = event.get("type")
        events: list[TResponseStreamEvent] = []
        if not self.started:
            self.started = True
            events.append(
                ResponseCreatedEvent(
                    response=_response(self.model.model, [], None),
                    type="response.created",
                    sequence_number=self.next_sequence(),
                )
            )
        if kind == "message_start":
            self._merge_usage((event.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            index = int(event.get("index", 0))
            block = dict(event.get("content_block") or {})
            self.blocks[index] = block
            events.extend(self._start(index, block))
        elif kind == "content_block_delta":
            index = int(event.get("index", 0))
            events.extend(self._delta(index, event.get("delta") or {}))
        elif kind == "content_block_stop":
            index = int(event.get("index", 0))
            events.extend(self._stop(index))
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
            self._merge_usage(event.get("usage"))
        elif kind == "error":
            error = event.get("error") or {}
            raise ModelBehaviorError(
                f"Anthropic stream error: {error.get('type')}: {error.get('message')}"
            )
        return events

    def _start(self, index: int, block: dict[str, Any]) -> list[TResponseStreamEvent]:
        kind = block.get("type")
        output_index = self.outputs
        if kind == "text":
            block["text"] = block.get("text") or ""
            item: ResponseOutputItem = _message([], status="in_progress")
        elif kind == "tool_use":
            self.json[index] = []
            if block.get("name") == STRUCTURED_TOOL and self.model.structured_output == "tool":
                item = _message([], status="in_progress")
            else:
                item = ResponseFunctionToolCall(
                    id=FAKE_RESPONSES_ID,
                    call_id=str(block.get("id")),
                    name=str(block.get("name")),
                    arguments="",
                    type="function_call",
                )
        elif kind in ("thinking", "redacted_thinking"):
            if kind == "thinking":
                block.setdefault("thinking", "")
            item = ResponseReasoningItem(id=FAKE_RESPONSES_ID, summary=[], type="reasoning")
        else:
            return []
        self.positions[index] = output_index
        self.outputs += 1
        events: list[TResponseStreamEvent] = [
            ResponseOutputItemAddedEvent(
                item=item,
                output_index=output_index,
                type="response.output_item.added",
                sequence_number=self.next_sequence(),
            )
        ]
        if isinstance(item, ResponseOutputMessage):
            events.append(
                ResponseContentPartAddedEvent(
                    content_index=0,
                    item_id=FAKE_RESPONSES_ID,
                    output_index=output_index,
                    part=ResponseOutputText(text="", type="output_text", annotations=[]),
                    type="response.content_part.added",
                    sequence_number=self.next_sequence(),
                )
            )
        return events

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[TResponseStreamEvent]:
        block = self.blocks.get(index)
        position = self.positions.get(index)
        if block is None or position is None:
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text") or "")
            block["text"] = block.get("text", "") + text
            return [
                ResponseTextDeltaEvent(
                    content_index=0,
                    delta=text,
                    item_id=FAKE_RESPONSES_ID,
                    output_index=position,
                    type="response.output_text.delta",
                    logprobs=[],
                    sequence_number=self.next_sequence(),
                )
            ]
        if kind == "input_json_delta":
            text = str(delta.get("partial_json") or "")
            self.json.setdefault(index, []).append(text)
            if block.get("name") == STRUCTURED_TOOL and self.model.structured_output == "tool":
                return [
                    ResponseTextDeltaEvent(
                        content_index=0,
                        delta=text,
                        item_id=FAKE_RESPONSES_ID,
                        output_index=position,
                        type="response.output_text.delta",
                        logprobs=[],
                        sequence_number=self.next_sequence(),
                    )
                ]
            return [
                ResponseFunctionCallArgumentsDeltaEvent(
                    delta=text,
                    item_id=FAKE_RESPONSES_ID,
                    output_index=position,
                    type="response.function_call_arguments.delta",
                    sequence_number=self.next_sequence(),
                )
            ]
        if kind == "thinking_delta":
            text = str(delta.get("thinking") or "")
            block["thinking"] = block.get("thinking", "") + text
            return [
                ResponseReasoningTextDeltaEvent(
                    content_index=0,
                    delta=text,
                    item_id=FAKE_RESPONSES_ID,
                    output_index=position,
                    type="response.reasoning_text.delta",
                    sequence_number=self.next_sequence(),
                )
            ]
        if kind == "signature_delta":
            block["signature"] = block.get("signature", "") + str(delta.get("signature") or "")
        return []

    def _stop(self, index: int) -> list[TResponseStreamEvent]:
        block = self.blocks.get(index)
        position = self.positions.get(index)
        if block is None or position is None:
            return []
        items = self.model._output_items([self._finished(index, block)])
        if not items:
            return []
        item = items[0]
        events: list[TResponseStreamEvent] = []
        if isinstance(item, ResponseOutputMessage) and item.content:
            events.append(
                ResponseContentPartDoneEvent(
                    content_index=0,
                    item_id=FAKE_RESPONSES_ID,
                    output_index=position,
                    part=cast(ResponseOutputText, item.content[0]),
                    type="response.content_part.done",
                    sequence_number=self.next_sequence(),
                )
            )
        events.append(
            ResponseOutputItemDoneEvent(
                item=item,
                output_index=position,
                type="response.output_item.done",
                sequence_number=self.next_sequence(),
            )
        )
        return events

    def _finished(self, index: int, block: dict[str, Any]) -> dict[str, Any]:
        if block.get("type") != "tool_use":
            return block
        text = "".join(self.json.get(index, []))
        try:
            parsed = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            parsed = {}
        return {**block, "input": parsed}


# -- conversions -------------------------------------------------------------------------


def _call(method: Any, body: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for an ``anthropic`` method: the body fields it takes by name,
    and the rest (``temperature``, ``top_k``, ... where a release dropped them from the
    signature) in ``extra_body``, which the client merges into the request last."""
    accepted = _parameters(method)
    known = {key: value for key, value in body.items() if key in accepted}
    extra = {key: value for key, value in body.items() if key not in accepted}
    kwargs = {**known, **options}
    if extra:
        kwargs["extra_body"] = {**extra, **(options.get("extra_body") or {})}
    return kwargs


@functools.lru_cache(maxsize=8)
def _signature_of(function: Any) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


def _parameters(method: Any) -> frozenset[str]:
    return _signature_of(getattr(method, "__func__", method))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _retry_after(headers: Any) -> float | None:
    for key, scale in (("retry-after-ms", 1_000.0), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is not None:
            try:
                return max(float(value) / scale, 0.0)
            except ValueError:
                continue
    return None


def _block_dict(block: Any) -> dict[str, Any]:
    if isinstance(block, dict):
        return block
    return cast(dict[str, Any], block.model_dump(mode="json", exclude_none=True))


def _message(
    texts: list[str], *, refusal: str | None = None, status: str = "completed"
) -> ResponseOutputMessage:
    content: list[ResponseOutputText | ResponseOutputRefusal] = [
        ResponseOutputText(text="".join(texts), type="output_text", annotations=[])
    ]
    if refusal is not None:
        content = [ResponseOutputRefusal(refusal=refusal, type="refusal")]
    return ResponseOutputMessage(
        id=FAKE_RESPONSES_ID,
        content=content if texts or refusal is not None else [],
        role="assistant",
        type="message",
        status=cast(Any, status),
    )


def _has_answer(output: list[ResponseOutputItem]) -> bool:
    for item in output:
        if isinstance(item, ResponseFunctionToolCall):
            return True
        if isinstance(item, ResponseOutputMessage) and any(
            getattr(part, "text", None) or getattr(part, "refusal", None) for part in item.content
        ):
            return True
    return False


def _response(
    model: str,
    output: list[ResponseOutputItem],
    usage: TokenUsage | None,
    *,
    incomplete: bool = False,
) -> Response:
    """The Responses ``Response`` the SDK (and agentbudget) read a streamed answer from."""
    response = Response(
        id=FAKE_RESPONSES_ID,
        created_at=time.time(),
        model=model,
        object="response",
        output=output,
        tool_choice="auto",
        tools=[],
        parallel_tool_calls=True,
        status="incomplete" if incomplete else "completed",
        incomplete_details=cast(Any, {"reason": "max_output_tokens"}) if incomplete else None,
    )
    if usage is not None:
        agents_usage = usage.to_agents_usage()
        response.usage = ResponseUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
            input_tokens_details=agents_usage.input_tokens_details,
            output_tokens_details=agents_usage.output_tokens_details,
        )
    return response


def _tool_definition(tool: Tool) -> dict[str, Any]:
    if not isinstance(tool, FunctionTool):
        raise UserError(
            f"AnthropicModel runs function tools only; {type(tool).__name__} is a hosted "
            "OpenAI tool"
        )
    return {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.params_json_schema,
    }


def _handoff_definition(handoff: Handoff[Any, Any]) -> dict[str, Any]:
    return {
        "name": handoff.tool_name,
        "description": handoff.tool_description or "",
        "input_schema": handoff.input_json_schema,
    }


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, str):
        return {"type": "tool", "name": choice}
    name = getattr(choice, "name", None)
    if isinstance(name, str):
        return {"type": "tool", "name": name}
    raise UserError(f"AnthropicModel cannot send tool_choice={choice!r}")


def _fit_thinking(thinking: Any, max_tokens: int) -> Any:
    """Extended thinking under ``max_tokens``: Anthropic rejects a budget at or above it."""
    if not isinstance(thinking, Mapping) or thinking.get("type") != "enabled":
        return thinking
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < max_tokens:
        return thinking
    if max_tokens - 1 < _MIN_THINKING_BUDGET:
        logger.info(
            "agentbudget: thinking turned off for a call bounded at %d output tokens", max_tokens
        )
        return None
    return {**thinking, "budget_tokens": max_tokens - 1}


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append({"type": "image", "source": _source(part["image_url"]["url"])})
        elif kind == "file":
            data = (part.get("file") or {}).get("file_data")
            if not isinstance(data, str) or not data.startswith("data:"):
                raise UserError("AnthropicModel sends files as base64 data URLs only")
            blocks.append({"type": "document", "source": _source(data)})
        else:
            raise UserError(f"AnthropicModel cannot send {kind!r} content")
    return blocks


def _source(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[len("data:") :].split(";", 1)[0]
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _assistant_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        dict(block) for block in message.get("thinking_blocks") or () if isinstance(block, dict)
    ]
    content = message.get("content")
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    else:
        for part in content or ():
            if part.get("type") in ("thinking", "redacted_thinking"):
                blocks.append(dict(part))
            elif part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
    if message.get("refusal"):
        blocks.append({"type": "text", "text": str(message["refusal"])})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except json.JSONDecodeError:
            arguments = {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function.get("name"),
                "input": arguments if isinstance(arguments, dict) else {},
            }
        )
    return blocks


def _tool_result_content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    blocks = _user_blocks(content)
    return blocks or ""


def _trace_config(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: body[key]
        for key in ("max_tokens", "temperature", "top_p", "tool_choice")
        if key in body
    }
