"""Context budgets: keep each LLM call's input under a token budget.

``ContextBudget`` is a ``RunConfig.call_model_input_filter``. Use it alone::

    RunConfig(call_model_input_filter=ab.ContextBudget(max_input_tokens=8_000))

or as the context stage of the governed run pipeline (``Guard(context=...)``,
``configure(context=...)``, ``budget(context=...)``), which composes it with the run's
own filter and reports the tokens it removed (``LLMCallCost.context_saved_tokens``,
``RunReport.context_saved_tokens``).

Before each call it counts the input with the estimator the breakers use
(``tokens.estimate_call_input``: instructions, input items, tool definitions) and, when
the count is over the budget, trims oldest first:

1. bulky tool outputs of the older turns, replaced by a preview (the SDK's own
   ``agents.extensions.ToolOutputTrimmer``);
2. whole older turns, oldest first (with ``summarize=``, replaced by one summary message);
3. bulky tool outputs of the recent turns except the latest one.

A turn starts at a user message and runs to the next one. A tool call is never separated
from its output (turns joined by a call id are dropped together), reasoning items stay
with the item after them, and the instructions, ``system``/``developer`` messages and the
latest user message are never dropped. When the budget cannot be met that way the call is
not sent: ``TokenLimitExceeded`` is raised before it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal

from agents import Agent, Handoff, RunConfig, handoff
from agents.agent_output import AgentOutputSchema, AgentOutputSchemaBase
from agents.extensions import ToolOutputTrimmer
from agents.run_config import CallModelData, ModelInputData

from .current import CURRENT_RUN
from .errors import ConfigurationError, TokenLimitExceeded
from .report import RunReport
from .resolution import model_name
from .tokens import (
    TOKENS_PER_MESSAGE,
    TOKENS_PER_REPLY,
    _approximated,
    count_item,
    count_text,
    encoding_for_model,
    get_encoding,
    request_tool_tokens,
)

__all__ = ["ContextBudget", "ContextFit", "cache_lint"]

Order = Literal["user_first", "budget_first"]
InputFilter = Callable[[CallModelData[Any]], "ModelInputData | Awaitable[ModelInputData]"]

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
_PINNED_ROLES = frozenset({"system", "developer"})
_COUNT_CACHE_SIZE = 8_192


@dataclasses.dataclass(frozen=True, slots=True)
class ContextFit:
    """What the budget did to one call's input."""

    input: list[Any]
    """The items to send."""
    tokens_before: int
    """The call's input as the breakers estimate it, before trimming."""
    tokens_after: int
    """The same estimate of what is sent."""
    dropped: tuple[Any, ...] = ()
    """The items of the older turns that were dropped (what a summary covers)."""

    @property
    def saved_tokens(self) -> int:
        return max(self.tokens_before - self.tokens_after, 0)


class ContextBudget:
    """A ``call_model_input_filter`` that keeps each call's input under a token budget.

    Args:
        max_input_tokens: the most input tokens one call may send: instructions, input
            items and tool definitions, counted as the breakers count them. None: no
            budget, only the tool-output trimming below (then applied to every call).
        keep_recent_turns: the latest turns (a turn starts at a user message) that are
            never dropped; at least 1 (the latest user message is always sent).
        trim_tool_outputs_over: tool outputs longer than this many characters in older
            turns are replaced by a preview of ``preview_chars`` when the input is over
            the budget. None: never trim tool outputs, only drop turns.
        preview_chars: how much of a trimmed tool output is kept.
        summarize: an agent (a cheap model) that summarises the dropped turns into one
            message. Its calls are part of the run: charged, limited and reported under
            its own agent name. Summaries are cached per dropped prefix.
        order: with a run's own ``call_model_input_filter``: ``"user_first"`` (default:
            the budget holds on what is sent) or ``"budget_first"``.

    Raises:
        ConfigurationError: for invalid arguments.
    """

    stage_order: ClassVar[int] = 20
    """Runs after the cache (and a router) among a run's stages."""

    def __init__(
        self,
        max_input_tokens: int | None = None,
        *,
        keep_recent_turns: int = 2,
        trim_tool_outputs_over: int | None = 2_000,
        preview_chars: int = 200,
        summarize: Agent[Any] | None = None,
        order: Order = "user_first",
    ) -> None:
        _check_int("max_input_tokens", max_input_tokens, minimum=1, optional=True)
        _check_int("keep_recent_turns", keep_recent_turns, minimum=1)
        _check_int("trim_tool_outputs_over", trim_tool_outputs_over, minimum=1, optional=True)
        _check_int("preview_chars", preview_chars, minimum=0)
        if max_input_tokens is None and trim_tool_outputs_over is None:
            raise ConfigurationError(
                "ContextBudget needs max_input_tokens, trim_tool_outputs_over or both"
            )
        if summarize is not None and not isinstance(summarize, Agent):
            raise ConfigurationError(f"summarize must be an agents.Agent, got {summarize!r}")
        if summarize is not None and max_input_tokens is None:
            raise ConfigurationError("summarize= needs max_input_tokens (nothing is dropped)")
        if order not in ("user_first", "budget_first"):
            raise ConfigurationError(f"order must be 'user_first' or 'budget_first', got {order!r}")
        self.max_input_tokens = max_input_tokens
        self.keep_recent_turns = keep_recent_turns
        self.trim_tool_outputs_over = trim_tool_outputs_over
        self.preview_chars = preview_chars
        self.summarize = summarize
        self.order: Order = order
        self._trimmer_ = self._trimmer(1)
        self._trimmed: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._counts: OrderedDict[int, tuple[Any, str, int]] = OrderedDict()
        self._overheads: OrderedDict[tuple[int, str], tuple[Agent[Any], int, int, int]] = (
            OrderedDict()
        )
        self._summaries: OrderedDict[str, str] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"ContextBudget(max_input_tokens={self.max_input_tokens}, "
            f"keep_recent_turns={self.keep_recent_turns}, "
            f"trim_tool_outputs_over={self.trim_tool_outputs_over})"
        )

    def _trimmer(self, recent_turns: int) -> ToolOutputTrimmer | None:
        if self.trim_tool_outputs_over is None:
            return None
        return ToolOutputTrimmer(
            recent_turns=recent_turns,
            max_output_chars=self.trim_tool_outputs_over,
            preview_chars=self.preview_chars,
        )

    # -- the filter --------------------------------------------------------------------

    def __call__(self, data: CallModelData[Any]) -> ModelInputData | Awaitable[ModelInputData]:
        """The ``call_model_input_filter``: the call's input, fitted to the budget.

        Returns an awaitable only with ``summarize=`` (the SDK awaits it).

        Raises:
            TokenLimitExceeded: the budget cannot be met without breaking the rules above.
        """
        return self._filter(data, model_name(data.agent, None))

    def _filter(
        self, data: CallModelData[Any], model: str
    ) -> ModelInputData | Awaitable[ModelInputData]:
        fit = self.fit(
            data.model_data.input,
            data.model_data.instructions,
            model=model,
            overhead_tokens=self.overhead_tokens(data.agent, model),
        )
        if self.summarize is not None and fit.dropped:
            return self._summarized(data, model, fit)
        _record(fit.saved_tokens)
        return ModelInputData(input=fit.input, instructions=data.model_data.instructions)

    def compose(
        self, user_filter: InputFilter | None, *, run_config: RunConfig | None = None
    ) -> InputFilter:
        """This budget and ``user_filter`` as one ``call_model_input_filter``, in ``order``.

        ``run_config`` (its ``model``) names the model whose tokenizer counts the input.
        """
        configured = run_config.model if run_config is not None else None
        budget = self

        def model_of(agent: Agent[Any]) -> str:
            return model_name(agent, RunConfig(model=configured) if configured else None)

        if user_filter is None:

            def alone(data: CallModelData[Any]) -> ModelInputData | Awaitable[ModelInputData]:
                return budget._filter(data, model_of(data.agent))

            return alone

        async def composed(data: CallModelData[Any]) -> ModelInputData:
            first, second = (
                (user_filter, None) if budget.order == "user_first" else (None, user_filter)
            )
            if first is not None:
                data = _with_input(data, await _resolved(first(data)))
            data = _with_input(data, await _resolved(budget._filter(data, model_of(data.agent))))
            if second is not None:
                return await _resolved(second(data))
            return data.model_data

        return composed

    # -- the stage ---------------------------------------------------------------------

    def begin(self, run: Any) -> None:
        """Context stage: compose this budget into the run's ``call_model_input_filter``
        (not into the summariser's own runs)."""
        if self.summarize is not None and run.agent is self.summarize:
            return
        run_config = run.kwargs.get("run_config")
        if isinstance(run_config, dict):
            run_config = RunConfig(**run_config)
        if run_config is None:
            run_config = RunConfig()
        run.kwargs["run_config"] = dataclasses.replace(
            run_config,
            call_model_input_filter=self.compose(
                run_config.call_model_input_filter, run_config=run_config
            ),
        )

    def wants_report(self, run: Any) -> bool:
        """Never: the saved tokens are already in the report's calls."""
        return False

    def finish(self, run: Any, report: RunReport, result: Any) -> None:
        """Nothing to do: the saved tokens are already in the report's calls."""

    # -- counting ----------------------------------------------------------------------

    def overhead_tokens(self, agent: Agent[Any], model: str) -> int:
        """Tokens of the agent's tool and handoff definitions and output schema.

        Counted from ``agent.tools`` and ``agent.handoffs`` (every one, enabled or not, so
        never less than what is sent; MCP servers' tools are not known here).
        """
        key = (id(agent), model)
        with self._lock:
            cached = self._overheads.get(key)
        shape = (len(agent.tools), len(agent.handoffs))
        if cached is not None and cached[0] is agent and cached[1:3] == shape:
            return cached[3]
        handoffs = [h if isinstance(h, Handoff) else handoff(h) for h in agent.handoffs]
        output_type = agent.output_type
        schema: AgentOutputSchemaBase | None = None
        if isinstance(output_type, AgentOutputSchemaBase):
            schema = output_type
        elif output_type is not None and output_type is not str:
            schema = AgentOutputSchema(output_type)
        tokens = request_tool_tokens(model, agent.tools, handoffs, schema)
        with self._lock:
            self._overheads[key] = (agent, *shape, tokens)
            if len(self._overheads) > 256:
                self._overheads.popitem(last=False)
        return tokens

    def _count(self, item: Any, encoding: Any, model: str) -> int:
        """``tokens.count_item`` with a cache by item identity (the SDK resends the same
        item objects on every call of a run; items are not changed in place once built)."""
        key = id(item)
        cached = self._counts.get(key)
        if cached is not None and cached[0] is item and cached[1] == encoding.name:
            return cached[2]
        tokens = count_item(item, encoding, model)
        with self._lock:
            self._counts[key] = (item, encoding.name, tokens)
            if len(self._counts) > _COUNT_CACHE_SIZE:
                self._counts.popitem(last=False)
        return tokens

    # -- fitting -----------------------------------------------------------------------

    def fit(
        self,
        items: Sequence[Any],
        instructions: str | None,
        *,
        model: str = "gpt-4o",
        overhead_tokens: int = 0,
        reserve: int = 0,
    ) -> ContextFit:
        """Fit ``items`` to the budget (the filter without the SDK around it).

        ``overhead_tokens`` are the tool definitions sent with the call; ``reserve`` is
        room kept free (for a summary message).

        Raises:
            TokenLimitExceeded: the budget cannot be met.
        """
        encoding_name, family = encoding_for_model(model)
        encoding = get_encoding(encoding_name)
        items = list(items)
        counts = [self._count(item, encoding, model) for item in items]
        fixed = TOKENS_PER_REPLY + overhead_tokens
        if instructions:
            fixed += TOKENS_PER_MESSAGE + count_text(instructions, encoding)
        raw = fixed + sum(counts)
        before = _approximated(raw, family)
        budget = self.max_input_tokens
        limit = None if budget is None else budget - reserve

        def fits(total: int) -> bool:
            return limit is not None and _approximated(total, family) <= limit

        if fits(raw):
            return ContextFit(items, before, before)

        # 1. bulky tool outputs of the older turns (always, without a budget)
        if self._trimmer_ is not None:
            items, raw = self._trim(self.keep_recent_turns, items, counts, raw, encoding, model)
            if budget is None or fits(raw):
                return ContextFit(items, before, _approximated(raw, family))

        # 2. whole older turns, oldest first
        groups, boundary = _groups(items, self.keep_recent_turns)
        dropped_at: set[int] = set()
        for group in groups:
            if group[0] >= boundary or group[-1] >= boundary or fits(raw):
                break
            for index in group:
                if not _pinned(items[index]):
                    dropped_at.add(index)
                    raw -= counts[index]
        dropped = tuple(item for i, item in enumerate(items) if i in dropped_at)
        kept = [item for i, item in enumerate(items) if i not in dropped_at]
        counts = [count for i, count in enumerate(counts) if i not in dropped_at]

        # 3. bulky tool outputs of the recent turns, except the latest
        if not fits(raw) and self._trimmer_ is not None:
            kept, raw = self._trim(1, kept, counts, raw, encoding, model)
        if not fits(raw):
            observed = _approximated(raw, family) + reserve
            raise TokenLimitExceeded(
                f"ContextBudget: the call's input is ~{observed} tokens after dropping every "
                f"older turn and trimming tool outputs, past max_input_tokens={budget} (the "
                f"instructions, tool definitions, the last {self.keep_recent_turns} turn(s) "
                "and tool calls paired with their outputs are never dropped)",
                limit="context.max_input_tokens",
                allowed=budget,
                observed=observed,
            )
        return ContextFit(kept, before, _approximated(raw, family), dropped)

    def _trim(
        self,
        keep_turns: int,
        items: list[Any],
        counts: list[int],
        raw: int,
        encoding: Any,
        model: str,
    ) -> tuple[list[Any], int]:
        """Trim bulky tool outputs before the last ``keep_turns`` turns with the SDK's
        ``ToolOutputTrimmer``, updating ``counts`` and ``raw``.

        Each output goes through the trimmer once: what it made of an item is kept by the
        item's identity (the SDK resends the same items on every call of a run).
        """
        assert self._trimmer_ is not None
        boundary = _recent_boundary(items, keep_turns)
        memo = self._trimmed
        fresh: list[int] = []
        out = items
        for index in range(boundary):
            item = items[index]
            if item.__class__ is not dict or item.get("type") not in _TRIMMABLE:
                continue
            done = memo.get(id(item))
            if done is None or done[0] is not item:
                fresh.append(index)
            elif done[1] is not item:
                if out is items:
                    out = list(items)
                out[index] = done[1]
        if fresh:
            calls = {
                item.get("call_id") or item.get("id"): item
                for item in items[:boundary]
                if item.__class__ is dict and item.get("type") in _NAMING_CALLS
            }
            batch: list[Any] = []
            at: list[int] = []
            for index in fresh:
                call = calls.get(items[index].get("call_id") or items[index].get("id"))
                if call is not None:
                    batch.append(call)
                at.append(len(batch))
                batch.append(items[index])
            batch.append({"role": "user", "content": ""})  # everything before it is old
            data = CallModelData(
                model_data=ModelInputData(input=batch, instructions=None),
                agent=_NO_AGENT,
                context=None,
            )
            trimmed = self._trimmer_(data).input
            with self._lock:
                for index, position in zip(fresh, at, strict=True):
                    memo[id(items[index])] = (items[index], trimmed[position])
                    if trimmed[position] is not items[index]:
                        if out is items:
                            out = list(items)
                        out[index] = trimmed[position]
                while len(memo) > _COUNT_CACHE_SIZE:
                    memo.popitem(last=False)
        if out is not items:
            for index in range(boundary):
                if out[index] is not items[index]:
                    tokens = self._count(out[index], encoding, model)
                    raw += tokens - counts[index]
                    counts[index] = tokens
        return out, raw

    # -- summaries ---------------------------------------------------------------------

    async def _summarized(
        self, data: CallModelData[Any], model: str, fit: ContextFit
    ) -> ModelInputData:
        """The fitted input with one summary message in place of the dropped turns.

        The input is refitted leaving room for the summary; when that drops more turns,
        those are summarised instead (at most three rounds). When no summary fits, the
        input goes without one.
        """
        encoding = get_encoding(encoding_for_model(model)[0])
        overhead = self.overhead_tokens(data.agent, model)
        model_data = data.model_data
        current = fit
        for _ in range(3):
            summary = self._cached_summary(_prefix_key(current.dropped))
            if summary is None:
                summary = await self._summary_of(current.dropped, data.context)
            message = {"role": "developer", "content": SUMMARY_PREFIX + summary}
            size = count_item(message, encoding, model)
            try:
                refit = self.fit(
                    model_data.input,
                    model_data.instructions,
                    model=model,
                    overhead_tokens=overhead,
                    reserve=size,
                )
            except TokenLimitExceeded:
                break  # no room for a summary: send the input without one
            if refit.dropped == current.dropped:
                first_kept = _first_unpinned(refit.input)
                items = [*refit.input[:first_kept], message, *refit.input[first_kept:]]
                _record(refit.tokens_before - refit.tokens_after - size)
                return ModelInputData(input=items, instructions=model_data.instructions)
            current = refit
        _record(fit.saved_tokens)
        return ModelInputData(input=fit.input, instructions=model_data.instructions)

    def _cached_summary(self, key: str) -> str | None:
        with self._lock:
            summary = self._summaries.get(key)
            if summary is not None:
                self._summaries.move_to_end(key)
            return summary

    async def _summary_of(self, dropped: Sequence[Any], context: Any) -> str:
        """Run the summariser over the dropped items (a nested run of the current one)."""
        from agents import Runner

        assert self.summarize is not None
        transcript = "\n".join(_transcript_line(item) for item in dropped)
        result = await Runner.run(
            self.summarize,
            "Summarise this earlier part of a conversation in a few sentences, keeping "
            "facts, decisions and open questions:\n\n" + transcript,
            context=context,
        )
        summary = str(result.final_output).strip()
        with self._lock:
            self._summaries[_prefix_key(dropped)] = summary
            if len(self._summaries) > 256:
                self._summaries.popitem(last=False)
        return summary


# -- helpers --------------------------------------------------------------------------


_NO_AGENT: Any = None
_NONE: tuple[None, None] = (None, None)
_TRIMMABLE = frozenset({"function_call_output", "tool_search_output"})
_NAMING_CALLS = frozenset({"function_call", "tool_search_call"})


def _check_int(name: str, value: object, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")


def _record(saved: int) -> None:
    """Carry the tokens removed from the next call's input to its record."""
    meter = CURRENT_RUN.get()
    if meter is not None and saved > 0:
        meter.context_saved_pending += saved


async def _resolved(value: ModelInputData | Awaitable[ModelInputData]) -> ModelInputData:
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, ModelInputData):
        raise TypeError("call_model_input_filter must return a ModelInputData instance")
    return value


def _with_input(data: CallModelData[Any], model_data: ModelInputData) -> CallModelData[Any]:
    return CallModelData(model_data=model_data, agent=data.agent, context=data.context)


def _field(item: Any, name: str) -> Any:
    if isinstance(item, dict):
        return item.get(name)
    return getattr(item, name, None)


def _is_user_message(item: Any) -> bool:
    return _field(item, "role") == "user" and _field(item, "type") in (None, "message")


def _pinned(item: Any) -> bool:
    return _field(item, "role") in _PINNED_ROLES


def _first_unpinned(items: Sequence[Any]) -> int:
    for index, item in enumerate(items):
        if not _pinned(item):
            return index
    return len(items)


def _links(item: Any) -> tuple[str | None, str | None]:
    """``(call id this item opens, call id this item answers)``."""
    kind = _field(item, "type")
    if not isinstance(kind, str):
        return None, None
    if kind == "mcp_approval_request":
        return _field(item, "id"), None
    if kind == "mcp_approval_response":
        return None, _field(item, "approval_request_id")
    call_id = _field(item, "call_id")
    if not isinstance(call_id, str):
        return None, None
    if kind.endswith("_output"):
        return None, call_id
    if kind.endswith("_call"):
        return call_id, None
    return None, None


def _recent_boundary(items: Sequence[Any], keep_turns: int) -> int:
    """The index of the ``keep_turns``-th user message from the end (0 if fewer), as
    ``ToolOutputTrimmer`` finds it."""
    seen = 0
    for index in range(len(items) - 1, -1, -1):
        if _is_user_message(items[index]):
            seen += 1
            if seen >= keep_turns:
                return index
    return 0


def _groups(items: Sequence[Any], keep_recent_turns: int) -> tuple[list[list[int]], int]:
    """The turns of ``items`` as index groups (turns joined by a call id are one group),
    and the index where the last ``keep_recent_turns`` turns start."""
    boundary = _recent_boundary(items, keep_recent_turns)
    groups: list[list[int]] = []
    opened: dict[str, int] = {}  # call id -> index of the group that made the call
    for index, item in enumerate(items):
        if item.__class__ is dict:
            kind = item.get("type")
            user = item.get("role") == "user" and kind in (None, "message")
            opens, answers = _links(item) if kind is not None and kind != "message" else _NONE
        else:
            user = _is_user_message(item)
            opens, answers = _links(item)
        if user or not groups:
            groups.append([])
        joined = opened.get(answers) if answers is not None else None
        if joined is not None and joined < len(groups) - 1:
            # an answer in a later turn: the call's turn absorbs every turn up to this one
            while len(groups) - 1 > joined:
                tail = groups.pop()
                groups[-1].extend(tail)
            for call_id, at in opened.items():
                if at > joined:
                    opened[call_id] = joined
        groups[-1].append(index)
        if opens is not None:
            opened[opens] = len(groups) - 1
    return groups, boundary


def _prefix_key(items: Sequence[Any]) -> str:
    text = json.dumps(
        [
            item.model_dump(exclude_none=True) if hasattr(item, "model_dump") else item
            for item in items
        ],
        ensure_ascii=False,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _transcript_line(item: Any) -> str:
    role = _field(item, "role") or _field(item, "type") or "item"
    content = _field(item, "content")
    if content is None:
        content = _field(item, "output") or _field(item, "arguments") or ""
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False, default=str)
    return f"{role}: {content}"


# -- prompt caching ------------------------------------------------------------------------

_VOLATILE = (
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"), "a timestamp"),
    (re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\b"), "a time of day"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "a UUID",
    ),
    (re.compile(r"\b1[5-9]\d{8}(\d{3})?\b"), "a Unix timestamp"),
    (re.compile(r"\b(request|session|trace|user)[ _-]?id\s*[:=]\s*\S+", re.I), "a per-request id"),
)
_DYNAMIC_HINT = re.compile(
    r"\b(user(name)?|customer|name|email|account|today|now|date)\s*[:=]\s*\S", re.I
)


def cache_lint(agent: Agent[Any]) -> list[str]:
    """Warnings about what stops the provider from caching ``agent``'s prompt prefix.

    Providers cache the longest exact prefix of a request (instructions, then tools, then
    input). Found here: timestamps, times, UUIDs and per-request ids in the instructions;
    tools in a non-deterministic order (a ``set``); per-user text before static text in
    the instructions; dynamic (callable) instructions. Each warning is also issued as a
    ``UserWarning``.
    """
    found: list[str] = []
    instructions = agent.instructions
    if callable(instructions):
        found.append(
            f"agent {agent.name!r}: instructions are a function: if what it returns changes "
            "per run (dates, user names), the cached prefix ends there; keep the static "
            "text first and constant"
        )
    elif isinstance(instructions, str):
        for pattern, what in _VOLATILE:
            match = pattern.search(instructions)
            if match is not None:
                found.append(
                    f"agent {agent.name!r}: the instructions contain {what} "
                    f"({match.group(0)!r}): it changes per request and breaks prefix "
                    "caching; move it into the latest user message"
                )
        dynamic = _DYNAMIC_HINT.search(instructions)
        if dynamic is not None and dynamic.start() < len(instructions) // 2:
            found.append(
                f"agent {agent.name!r}: per-user text ({dynamic.group(0)!r}) comes before "
                "most of the static instructions: only the text before it can be cached; "
                "put static text first"
            )
    tools = agent.tools
    if isinstance(tools, set | frozenset):
        found.append(
            f"agent {agent.name!r}: tools are a set, so their order (part of the cached "
            "prefix) changes between processes; use a list"
        )
    names = [getattr(tool, "name", "") for tool in tools]
    if len(names) != len(set(names)):
        found.append(f"agent {agent.name!r}: duplicate tool names {names}")
    for message in found:
        warnings.warn(message, UserWarning, stacklevel=2)
    return found
