"""The metered model: every LLM call of a governed run passes through here.

While a run is governed, the model the SDK resolves for each call is wrapped in a
``MeteredModel``. Before the request is sent it estimates the input (tiktoken over
instructions, input items and tool schemas), checks and holds the worst case on every
account, and bounds the request's output (``max_tokens``) to what the limits still
allow, so a provider that honours the bound cannot overshoot. While a response
streams it counts output tokens from the deltas and stops the stream the moment a
limit would be crossed. After the response it charges the actual usage, priced with
the model that served it, and refuses to let a batch of tool calls run when the batch
would pass ``max_tool_calls``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from agents import Agent, FunctionTool, Handoff, Model, ModelProvider, ModelSettings, Tool
from agents.agent_output import AgentOutputSchemaBase
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.interface import ModelTracing
from agents.retry import ModelRetryAdvice, ModelRetryAdviceRequest

from .errors import (
    AgentBudgetError,
    AgentBudgetExceeded,
    ConfigurationError,
    CostLimitExceeded,
    TokenLimitExceeded,
    UnknownModelError,
)
from .meter import MIN_OUTPUT_TOKENS, Account, CallRecord, Hold, RunMeter, hold, release
from .money import pico_to_nanos
from .pricing import ModelPrice, TokenUsage
from .tokens import (
    count_text,
    count_tools_with,
    encoding_for_model,
    estimate_call_input,
    get_encoding,
    input_upper_bound,
)

if TYPE_CHECKING:
    from openai.types.responses.response_prompt_param import ResponsePromptParam

logger = logging.getLogger("agentbudget")

DEFAULT_OUTPUT_BOUND = 16_384
"""Output bound for a call when neither its settings nor its price entry give one."""

_LOCAL_TOOL_CALL_TYPES = frozenset(
    {
        "computer_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "custom_tool_call",
    }
)
_OUTPUT_DELTA_TYPES = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.audio.transcript.delta",
    }
)
_warned_unpriced: set[str] = set()


def tool_schema(tool: Tool | Handoff[Any, Any]) -> dict[str, Any]:
    """The part of a tool's definition that the model reads, for the input estimate."""
    if isinstance(tool, FunctionTool):
        return {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.params_json_schema,
        }
    if isinstance(tool, Handoff):
        return {
            "name": tool.tool_name,
            "description": tool.tool_description,
            "parameters": tool.input_json_schema,
        }
    return {"name": getattr(tool, "name", type(tool).__name__)}


def pending_tool_calls(response: ModelResponse, handoff_names: set[str]) -> int:
    """How many local tool executions a response asks for (handoffs excluded)."""
    count = 0
    for item in response.output:
        kind = getattr(item, "type", None)
        if kind is None and isinstance(item, dict):
            kind = item.get("type")
        if kind == "function_call":
            name = getattr(item, "name", None) or (
                item.get("name") if isinstance(item, dict) else None
            )
            if name not in handoff_names:
                count += 1
        elif kind in _LOCAL_TOOL_CALL_TYPES:
            count += 1
    return count


@dataclasses.dataclass
class CallRequest:
    """What the SDK asked one LLM call to send."""

    instructions: str | None
    input: str | list[TResponseInputItem]
    settings: ModelSettings
    tools: Sequence[Tool]
    handoffs: Sequence[Handoff[Any, Any]]


@dataclasses.dataclass
class _Measure:
    price_key: str | None
    price: ModelPrice | None
    input_tokens: int
    input_pico: int
    pico_per_output: int | None
    bound: int
    binding: tuple[str, Account] | None


@dataclasses.dataclass
class CallPlan:
    """What agentbudget decided before one LLM call."""

    inner: Model
    """The model that will serve the call (a ``Downgrade`` may have swapped it)."""
    model_name: str
    price_key: str | None
    price: ModelPrice | None
    input_estimate: int
    """The input held for the call: exact (tiktoken) or, far from limits, an upper bound."""
    input_exact: bool
    input_pico: int
    """The input's worst-case cost in pico-USD (1e-12), at the uncached rate."""
    pico_per_output: int | None
    output_bound: int
    binding: tuple[str, Account] | None
    """The limit (and its account) that bounded the output, when agentbudget lowered it."""
    hold: Hold
    settings: ModelSettings
    request: CallRequest
    degraded: str | None = None
    """``"downgrade"`` / ``"cap_output"`` when a budget's degrade chain changed the call."""
    reservation: Any = None
    """The budget-store reservation held for this call, if budgets apply."""

    @property
    def worst_nanos(self) -> int:
        return _worst_nanos(self.input_pico, self.pico_per_output, self.output_bound)


class MeteredModel(Model):
    """Wraps the model that serves one agent's calls inside a governed run."""

    def __init__(
        self,
        inner: Model,
        *,
        name: str,
        agent: Agent[Any],
        meter: RunMeter,
        provider: ModelProvider | None = None,
    ) -> None:
        self.inner = inner
        self.name = name
        self.agent = agent
        self.meter = meter
        self.provider = provider
        self.swapped: list[Model] = []
        """Models a ``Downgrade`` swapped in for this one during the run."""

    def __getattr__(self, item: str) -> Any:
        # Everything the SDK may ask of the model that this wrapper does not define.
        return getattr(self.inner, item)

    @property
    def model(self) -> str:
        return self.name

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        if isinstance(request.error, AgentBudgetError):
            return ModelRetryAdvice(suggested=False, reason="agentbudget limit")
        return self.inner.get_retry_advice(request)

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        # ``Model`` defines this as a no-op, so ``__getattr__`` never forwards it. The SDK
        # calls it once per model object it resolved; one inner model may sit behind
        # several proxies (one per agent), so each inner model is cleaned up once per run.
        error: Exception | None = None
        for model in (self.inner, *self.swapped):
            if not self.meter.first_cleanup(model):
                continue
            try:
                await model._cleanup_on_run_end(owner)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    # -- planning ----------------------------------------------------------------------

    def _tool_tokens(
        self, model: str, tools: Sequence[Tool], handoffs: Sequence[Handoff[Any, Any]]
    ) -> int:
        """Tokens of the tool definitions (each tool's count is cached while it lives)."""
        encoding = encoding_for_model(model)[0]
        return sum(_tool_tokens(tool, encoding) for tool in (*tools, *handoffs))

    def _price(self, name: str) -> tuple[str | None, ModelPrice | None]:
        try:
            return self.meter.guard.prices.lookup(name)
        except UnknownModelError:
            if self.meter.needs_prices():
                raise
            if name not in _warned_unpriced:
                _warned_unpriced.add(name)
                logger.warning(
                    "agentbudget: no price for model %r; its calls are recorded as unpriced "
                    "(cost_usd=None). Add one with PriceTable.with_prices().",
                    name,
                )
            return None, None

    def resolve(self, model: str | Model) -> tuple[Model, str]:
        """The ``Model`` and price name for a ``Downgrade`` target."""
        if isinstance(model, Model):
            if model is not self.inner and not any(seen is model for seen in self.swapped):
                self.swapped.append(model)
            name = getattr(model, "model", None)
            return model, name if isinstance(name, str) else type(model).__name__
        if self.provider is None:
            raise ConfigurationError(f"cannot resolve model {model!r}: no model provider")
        resolved = self.provider.get_model(model)
        if not any(seen is resolved for seen in self.swapped):
            self.swapped.append(resolved)
        return resolved, model

    def plan(
        self,
        request: CallRequest,
        *,
        inner: Model | None = None,
        name: str | None = None,
        output_cap: int | None = None,
        degraded: str | None = None,
    ) -> CallPlan:
        """Check every account and hold the call's worst case on them.

        Far from every limit (and without budgets) the input is bounded by its UTF-8 size
        instead of being tokenized; when that bound would come near a limit, the input is
        counted exactly and the decision made on the exact count.

        Raises:
            AgentBudgetExceeded: the call cannot fit (the run is marked tripped).
        """
        meter = self.meter
        if meter.tripped is not None:
            raise meter.tripped
        inner = inner if inner is not None else self.inner
        name = name if name is not None else self.name
        tool_tokens = self._tool_tokens(name, request.tools, request.handoffs)
        measured: _Measure | None = None
        exact = True
        if meter.guard.budgets is None and output_cap is None:
            upper = input_upper_bound(
                name, request.instructions, request.input, tool_tokens=tool_tokens
            )
            try:
                measured = self._measure(request, name, upper)
            except AgentBudgetExceeded:
                measured = None
            if measured is not None and measured.binding is not None:
                measured = None  # near a limit: decide on the exact count
            exact = measured is None
        try:
            if measured is None:
                estimate = estimate_call_input(
                    name, request.instructions, request.input, tool_tokens=tool_tokens
                )
                measured = self._measure(request, name, estimate.tokens)
        except AgentBudgetExceeded as exc:
            raise meter.trip(exc) from None
        bound = measured.bound
        settings = request.settings
        if output_cap is not None and output_cap < bound:
            bound = output_cap
        if bound != settings.max_tokens and (
            settings.max_tokens is not None
            or measured.binding is not None
            or output_cap is not None
        ):
            settings = dataclasses.replace(settings, max_tokens=bound)
        worst = _worst_nanos(measured.input_pico, measured.pico_per_output, bound)
        held = hold(meter.accounts, measured.input_tokens, bound, worst)
        return CallPlan(
            inner=inner,
            model_name=name,
            price_key=measured.price_key,
            price=measured.price,
            input_estimate=measured.input_tokens,
            input_exact=exact,
            input_pico=measured.input_pico,
            pico_per_output=measured.pico_per_output,
            output_bound=bound,
            binding=measured.binding,
            hold=held,
            settings=settings,
            request=request,
            degraded=degraded,
        )

    def _measure(self, request: CallRequest, name: str, input_tokens: int) -> _Measure:
        """Price a call with ``input_tokens`` of input and find the output room every account
        leaves it.

        Raises:
            AgentBudgetExceeded: the call cannot fit (nothing is marked or held).
        """
        for account in self.meter.accounts:
            account.check_time()
        price_key, price = self._price(name)
        bound = request.settings.max_tokens
        if bound is None:
            bound = (price.max_output_tokens if price else None) or DEFAULT_OUTPUT_BOUND
        input_pico = 0
        per_output: int | None = None
        if price is not None:
            pico_rates = price.rates_for(input_tokens).pico_rates()[0]
            input_pico = input_tokens * pico_rates["input"]
            per_output = max(pico_rates["output"], pico_rates.get("reasoning", 0))
        room: tuple[int, str, Account] | None = None
        for account in self.meter.accounts:
            account_room = account.output_room(input_tokens, input_pico, per_output)
            if account_room is not None and (room is None or account_room[0] < room[0]):
                room = (*account_room, account)
        binding: tuple[str, Account] | None = None
        if room is not None and room[0] < bound:
            bound = max(room[0], MIN_OUTPUT_TOKENS)
            binding = (room[1], room[2])
        return _Measure(price_key, price, input_tokens, input_pico, per_output, bound, binding)

    def release(self, plan: CallPlan) -> None:
        """Drop a plan's holds (it will not be sent)."""
        release(plan.hold)

    async def _prepare(self, request: CallRequest) -> CallPlan:
        plan = self.plan(request)
        budgets = self.meter.guard.budgets
        if budgets is None:
            return plan
        try:
            return await budgets.admit(self, request, plan)
        except AgentBudgetExceeded as exc:
            raise self.meter.trip(exc) from None

    # -- settling ----------------------------------------------------------------------

    async def _settle(
        self, plan: CallPlan, usage: TokenUsage, *, estimated: bool, streamed: bool
    ) -> None:
        release(plan.hold)
        nanos: int | None = None
        unpriced: UnknownModelError | None = None
        if plan.price is not None:
            try:
                nanos = plan.price.cost_nanos(usage, model=plan.model_name)
            except UnknownModelError as exc:  # a bucket without a rate: never $0
                unpriced = exc
                logger.warning("agentbudget: call recorded as unpriced: %s", exc)
        self.meter.record_call(
            CallRecord(
                self.agent.name,
                plan.model_name,
                plan.price_key,
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.cache_write_tokens + usage.cache_write_1h_tokens,
                usage.output_tokens,
                usage.reasoning_tokens,
                nanos,
                estimated,
                streamed,
                plan.degraded,
            )
        )
        if plan.reservation is not None:
            budgets = self.meter.guard.budgets
            assert budgets is not None
            # an unpriceable call settles at its reserved worst case, never at $0; it is
            # settled in its own task, so a cancellation of the run cannot cut it short
            settled = plan.worst_nanos if unpriced is not None else nanos
            task = asyncio.ensure_future(budgets.settle(plan.reservation, usage, settled))
            await asyncio.shield(task)
        if unpriced is not None and self.meter.needs_prices():
            raise unpriced  # dollars are limited and this call cannot be priced: stop

    def _exact_input(self, plan: CallPlan) -> int:
        """The tiktoken estimate of the call's input (the plan may hold an upper bound)."""
        if plan.input_exact:
            return plan.input_estimate
        request = plan.request
        return estimate_call_input(
            plan.model_name,
            request.instructions,
            request.input,
            tool_tokens=self._tool_tokens(plan.model_name, request.tools, request.handoffs),
        ).tokens

    async def _settle_failed(self, plan: CallPlan, output_tokens: int, *, streamed: bool) -> None:
        """A call that failed or was cut short: charge at least the estimated input."""
        if plan.hold.released:
            return
        await self._settle(
            plan,
            TokenUsage(input_tokens=self._exact_input(plan), output_tokens=output_tokens),
            estimated=True,
            streamed=streamed,
        )

    def _after_response(
        self, plan: CallPlan, response: ModelResponse, handoffs: Sequence[Handoff[Any, Any]]
    ) -> None:
        meter = self.meter
        try:
            for account in meter.accounts:
                account.check_after_call()
            pending = pending_tool_calls(response, {h.tool_name for h in handoffs})
            if pending:
                for account in meter.accounts:
                    account.check_tools(pending)
            if plan.binding is not None and response.usage.output_tokens >= plan.output_bound:
                # The bound agentbudget set was reached: the answer is cut at the limit.
                raise _limit_error(
                    plan,
                    0,
                    f"the response was cut at {plan.output_bound} output tokens",
                )
        except AgentBudgetExceeded as exc:
            raise meter.trip(exc) from None

    # -- the Model interface -------------------------------------------------------------

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
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        request = CallRequest(system_instructions, input, model_settings, tools, handoffs)
        plan = await self._prepare(request)
        try:
            response = await plan.inner.get_response(
                system_instructions,
                input,
                plan.settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )
        except BaseException:
            await self._settle_failed(plan, 0, streamed=False)
            raise
        await self._settle(
            plan, TokenUsage.from_agents_usage(response.usage), estimated=False, streamed=False
        )
        self._after_response(plan, response, handoffs)
        return response

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
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        request = CallRequest(system_instructions, input, model_settings, tools, handoffs)
        plan = await self._prepare(request)
        meter = self.meter
        encoding = get_encoding(encoding_for_model(plan.model_name)[0])
        counted = 0
        stream = plan.inner.stream_response(
            system_instructions,
            input,
            plan.settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )
        try:
            async for event in stream:
                kind = getattr(event, "type", None)
                if kind in _OUTPUT_DELTA_TYPES:
                    counted += count_text(getattr(event, "delta", "") or "", encoding)
                    if plan.binding is not None and counted > plan.output_bound:
                        raise meter.trip(
                            _limit_error(
                                plan, counted, f"stream stopped at {counted} output tokens"
                            )
                        )
                elif kind == "response.completed":
                    response = event.response  # type: ignore[union-attr]
                    usage = _response_usage(response.usage)
                    if usage is None:  # the provider reported none: charge what was sent
                        usage = TokenUsage(
                            input_tokens=self._exact_input(plan), output_tokens=counted
                        )
                    await self._settle(plan, usage, estimated=response.usage is None, streamed=True)
                    model_response = ModelResponse(
                        output=response.output,
                        usage=_agents_usage(usage),
                        response_id=response.id,
                    )
                    self._after_response(plan, model_response, handoffs)
                yield event
        except BaseException:
            await self._settle_failed(plan, counted, streamed=True)
            raise
        finally:
            # Closed in this task, as the SDK closes every layer (``aclosing``): a stream
            # finalized in another task would leave the model's span unended.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


_TOOL_TOKENS: dict[tuple[int, str], tuple[weakref.ref[Any], int]] = {}


def _tool_tokens(tool: Tool | Handoff[Any, Any], encoding: str) -> int:
    """One tool definition's tokens, cached per tool object (dropped when it is collected)."""
    key = (id(tool), encoding)
    cached = _TOOL_TOKENS.get(key)
    if cached is not None and cached[0]() is tool:
        return cached[1]
    tokens = count_tools_with(encoding, [tool_schema(tool)])

    def forget(_ref: weakref.ref[Any]) -> None:
        _TOOL_TOKENS.pop(key, None)

    try:
        ref = weakref.ref(tool, forget)
    except TypeError:  # not weak-referenceable: count it every time
        return tokens
    _TOOL_TOKENS[key] = (ref, tokens)
    return tokens


def _worst_nanos(input_pico: int, pico_per_output: int | None, bound: int) -> int:
    """The most a call can cost, in whole nano-USD: its input, and its whole output bound."""
    return pico_to_nanos(input_pico + (pico_per_output or 0) * bound)


def _response_usage(usage: Any) -> TokenUsage | None:
    if usage is None:
        return None
    return TokenUsage.from_agents_usage(usage)


def _agents_usage(usage: TokenUsage) -> Any:
    from agents.usage import Usage

    return Usage(
        requests=1,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )


def _limit_error(plan: CallPlan, uncharged_output: int, what: str) -> AgentBudgetExceeded:
    """The error for a call whose output reached the bound a limit gave it.

    ``uncharged_output`` is output counted from a stream but not yet charged.
    """
    assert plan.binding is not None
    name, account = plan.binding
    allowed = getattr(account.limits, name)
    shown = f"${allowed}" if name == "max_cost_usd" else f"{allowed}"
    message = (
        f"{account.name}: {what}; {name}={shown} left {plan.output_bound} output tokens "
        "for this call"
    )
    if name == "max_cost_usd":
        return CostLimitExceeded(message, limit=name, allowed=allowed, observed=account.cost_usd)
    used = account.output_tokens if name == "max_output_tokens" else account.total_tokens
    return TokenLimitExceeded(
        message, limit=name, allowed=allowed, observed=used + uncharged_output
    )
