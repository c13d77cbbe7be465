"""Server-side compaction, metered: ``OpenAIResponsesCompactionSession``'s calls to
``responses.compact`` are LLM calls like any other.

The SDK's compaction session calls ``client.responses.compact`` itself, not through a
``Model``, so its calls would escape every limit and budget. While a governed run is
current, the session's client (``_sdk`` patches its ``client`` property) is wrapped so
that each ``compact`` call goes through a ``MeteredModel``: checked against the run's
limits and budgets before it is sent, priced at the usage the server reports, charged to
the run's accounts and reservations, and reported as a call of agent ``"compaction"``.
``responses.compact`` takes no output bound: its output is checked after the call (the
limits' backstop), like a provider that ignores the bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, Model, ModelSettings
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.interface import ModelTracing
from agents.usage import Usage

from .current import CURRENT_RUN
from .interceptor import MeteredModel
from .meter import RunMeter
from .tokens import TokenEstimate

__all__ = ["COMPACTION_AGENT", "metered_compaction_client"]

COMPACTION_AGENT: Agent[Any] = Agent(name="compaction")
"""The agent name a compaction call is reported under."""


def metered_compaction_client(client: Any) -> Any:
    """``client``, metered while a governed run is current (else ``client`` itself)."""
    meter = CURRENT_RUN.get()
    if meter is None or isinstance(client, _MeteredClient):
        return client
    return _MeteredClient(client, meter)


class _MeteredClient:
    """An ``AsyncOpenAI`` whose ``responses.compact`` is metered; the rest passes through."""

    def __init__(self, client: Any, meter: RunMeter) -> None:
        self._client = client
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def responses(self) -> _MeteredResponses:
        return _MeteredResponses(self._client.responses, self._meter)


class _MeteredResponses:
    def __init__(self, responses: Any, meter: RunMeter) -> None:
        self._responses = responses
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._responses, name)

    async def compact(self, **kwargs: Any) -> Any:
        call = _CompactCall(self._responses, kwargs, _server_side_input(self._meter, kwargs))
        model = _CompactionModel(
            call, name=str(kwargs.get("model")), agent=COMPACTION_AGENT, meter=self._meter
        )
        items = kwargs.get("input")
        await model.get_response(
            kwargs.get("instructions"),
            items if isinstance(items, str | list) else [],
            ModelSettings(),
            [],
            None,
            [],
            ModelTracing.DISABLED,
            previous_response_id=kwargs.get("previous_response_id"),
            conversation_id=None,
            prompt=None,
        )
        return call.box[0]


def _server_side_input(meter: RunMeter, kwargs: dict[str, Any]) -> int | None:
    """The input of a compaction the server assembles itself (``previous_response_id``
    mode, no ``input`` sent): at least what the run's latest call read and wrote, the
    conversation that response ended. None when the request carries its input."""
    if kwargs.get("input") or not kwargs.get("previous_response_id"):
        return None
    for call in reversed(meter.calls):
        if call.agent != COMPACTION_AGENT.name:
            return call.input_tokens + call.output_tokens
    return None


class _CompactionModel(MeteredModel):
    """A metered compaction call. A ``Downgrade`` to a model name sends the compaction to
    that model; a ``Model`` instance cannot serve ``responses.compact``, so that step keeps
    the call's model (and the degrade chain goes on to its next step)."""

    def resolve(self, target: str | Model) -> tuple[Model, str]:
        if isinstance(target, str):
            return self.inner.renamed(target), target  # type: ignore[attr-defined]
        return self.inner, self.name


class _CompactCall(Model):
    """One ``responses.compact`` request as a ``Model`` call (the metered model's inner).

    ``input_tokens``: when the server assembles the input (``previous_response_id``), what
    the call is planned on (as a provider's own count would be), since the request has
    none to estimate.
    """

    def __init__(
        self,
        responses: Any,
        kwargs: dict[str, Any],
        input_tokens: int | None = None,
        box: list[Any] | None = None,
    ) -> None:
        self.responses = responses
        self.kwargs = kwargs
        self.model = str(kwargs.get("model"))
        self.box: list[Any] = box if box is not None else [None]
        """The server's answer, shared with a renamed copy (whichever one ran)."""
        self.count_tokens = input_tokens is not None
        self._input_tokens = input_tokens or 0

    def renamed(self, model: str) -> _CompactCall:
        """The same request sent to ``model`` (a budget's ``Downgrade``)."""
        call = _CompactCall(self.responses, {**self.kwargs, "model": model}, box=self.box)
        call.count_tokens, call._input_tokens = self.count_tokens, self._input_tokens
        return call

    async def count_input_tokens(self, *args: Any) -> TokenEstimate:
        return TokenEstimate(tokens=self._input_tokens, encoding="", approximate=True)

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        # the request as the session built it (to this call's model): compaction takes no
        # output bound
        result = self.box[0] = await self.responses.compact(**self.kwargs)
        reported = getattr(result, "usage", None)
        usage = Usage(requests=1)
        if reported is not None:
            usage = Usage(
                requests=1,
                input_tokens=reported.input_tokens,
                output_tokens=reported.output_tokens,
                total_tokens=reported.total_tokens,
                input_tokens_details=reported.input_tokens_details,
                output_tokens_details=reported.output_tokens_details,
            )
        return ModelResponse(
            output=list(getattr(result, "output", None) or []),
            usage=usage,
            response_id=getattr(result, "id", None),
        )

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("responses.compact does not stream")
