"""The router's contract: ``Router``, ``RouteRequest``, the budget snapshot, and tiers.

A router chooses the model of a whole run, once, before the SDK starts (the prompt
cache of one model stays warm for the run). ``Router.route`` is async; a router that can
decide without awaiting anything also offers ``route_sync``, which streamed runs use
(``Runner.run_streamed`` starts synchronously).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from agents import Agent, AgentOutputSchemaBase, Model, ModelSettings

from ..budgets import WindowSpend
from ..errors import ConfigurationError
from ..report import Route
from ..tokens import count_text, get_encoding

__all__ = [
    "BudgetSnapshot",
    "NoSyncRoute",
    "RouteRequest",
    "Router",
    "SyncRouter",
    "Tier",
    "check_tiers",
    "fitting_tier",
    "input_text",
]


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """What the run's user, team and the global allowances had left when the run began."""

    windows: tuple[WindowSpend, ...] = ()

    def used_share(self, per: str = "user") -> float | None:
        """The largest share (0..1, spent plus reserved over the limit) of any allowance
        ``per`` ``"user"``, ``"team"`` or ``"global"``; None when there is none."""
        shares = [
            (w.spent + w.reserved) / w.limit
            for w in self.windows
            if w.allowance.per == per and w.limit > 0
        ]
        return max(shares) if shares else None

    def remaining(self, per: str = "user") -> int | None:
        """The least ``remaining`` of the allowances ``per`` ``"user"``/``"team"``/``"global"``
        (in each allowance's own unit); None when there is none."""
        left = [w.remaining for w in self.windows if w.allowance.per == per]
        return min(left) if left else None


@dataclasses.dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a router sees of the run it routes."""

    input: Any
    """The run's input, as given to ``Runner.run`` (a string or a list of input items)."""
    agent: Agent[Any]
    """The starting agent (never mutated: the route is applied to a clone)."""
    user: str | None = None
    team: str | None = None
    context: Any = None
    """The run's ``context`` argument."""
    budget: BudgetSnapshot | None = None
    """The budgets' state for the user, team and global allowances when the run began;
    None without ``Budgets`` (or in a streamed run, which cannot wait for the store)."""
    streamed: bool = False

    @property
    def text(self) -> str:
        """The text of the request: the input string, or the last user message's text."""
        return input_text(self.input)

    @property
    def needs_tools(self) -> bool:
        return bool(self.agent.tools) or bool(self.agent.handoffs)

    @property
    def needs_structured_output(self) -> bool:
        output = self.agent.output_type
        if output is None or output is str:
            return False
        return not (isinstance(output, AgentOutputSchemaBase) and output.is_plain_text())

    def input_tokens(self) -> int:
        """A count of the request's input text and the agent's static instructions."""
        instructions = self.agent.instructions if isinstance(self.agent.instructions, str) else ""
        return count_text(instructions + "\n" + _all_text(self.input), get_encoding("o200k_base"))


class NoSyncRoute(ConfigurationError):
    """Raised by ``route_sync`` of a router that wraps one without a synchronous path: a
    streamed run then keeps the agent's own model (as with a router without ``route_sync``)."""


@runtime_checkable
class Router(Protocol):
    """Chooses the model of a run, once, before the SDK starts."""

    async def route(self, request: RouteRequest) -> Route: ...


@runtime_checkable
class SyncRouter(Router, Protocol):
    """A router that can also decide without awaiting (used by streamed runs)."""

    def route_sync(self, request: RouteRequest) -> Route: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Tier:
    """A named model tier and what its model can do.

    Args:
        name: the tier's name, recorded in the report (``route.tier``).
        model: a model name (served by the run's model provider, or by the same class
            and client as the agent's own ``Model`` instance) or an ``agents.Model``.
        tools: the model can call tools (and so take handoffs).
        structured_output: the model honours a JSON schema (``output_type``).
        context_window: the model's context window in tokens (None: not checked).
        model_settings: overrides resolved over the agent's settings on this tier.
    """

    name: str
    model: str | Model
    tools: bool = True
    structured_output: bool = True
    context_window: int | None = None
    model_settings: ModelSettings | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"a tier's name must be a non-empty string, got {self.name!r}")
        if not (isinstance(self.model, str) and self.model) and not isinstance(self.model, Model):
            raise ConfigurationError(
                f"tier {self.name!r}: model must be a model name or an agents.Model, "
                f"got {self.model!r}"
            )
        if self.context_window is not None and (
            isinstance(self.context_window, bool)
            or not isinstance(self.context_window, int)
            or self.context_window <= 0
        ):
            raise ConfigurationError(
                f"tier {self.name!r}: context_window must be a positive int or None, "
                f"got {self.context_window!r}"
            )
        if self.model_settings is not None and not isinstance(self.model_settings, ModelSettings):
            raise ConfigurationError(
                f"tier {self.name!r}: model_settings must be an agents.ModelSettings"
            )

    @classmethod
    def of(cls, name: str, value: str | Model | Tier) -> Tier:
        """A tier from a model name, a ``Model`` or a ``Tier`` (renamed to ``name`` only
        when given as a model)."""
        if isinstance(value, Tier):
            return value
        # a local_model() declares its capabilities
        window = getattr(value, "context_window", None)
        return cls(
            name,
            value,
            tools=getattr(value, "tools", True) is not False,
            structured_output=getattr(value, "structured_output", True) is not False,
            context_window=window if isinstance(window, int) else None,
        )

    def misfit(self, request: RouteRequest, input_tokens: int | None) -> str | None:
        """Why this tier cannot serve ``request`` (None: it can)."""
        if request.needs_tools and not self.tools:
            return "the agent has tools or handoffs"
        if request.needs_structured_output and not self.structured_output:
            return "the agent has a structured output_type"
        if (
            self.context_window is not None
            and input_tokens is not None
            and input_tokens > self.context_window
        ):
            return f"{input_tokens} input tokens exceed its {self.context_window}-token window"
        return None

    def route(self, reason: str) -> Route:
        return Route(
            model=self.model, tier=self.name, reason=reason, model_settings=self.model_settings
        )


def check_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """``tiers`` as a tuple, cheapest first; at least one, names unique."""
    tiers = tuple(tiers)
    if not tiers:
        raise ConfigurationError("a router needs at least one tier")
    for tier in tiers:
        if not isinstance(tier, Tier):
            raise ConfigurationError(f"tiers must be agentbudget.routing.Tier, got {tier!r}")
    names = [tier.name for tier in tiers]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"tier names must be unique, got {names}")
    return tiers


def fitting_tier(tiers: Sequence[Tier], index: int, request: RouteRequest, reason: str) -> Route:
    """The route to ``tiers[index]``, or to the first stronger tier whose capabilities fit
    the agent (tools, structured output, context window); the strongest when none does."""
    needs_window = any(tier.context_window is not None for tier in tiers)
    tokens = request.input_tokens() if needs_window else None
    notes: list[str] = []
    for tier in tiers[index:]:
        misfit = tier.misfit(request, tokens)
        if misfit is None:
            why = reason if not notes else f"{reason}; {'; '.join(notes)}"
            return tier.route(why)
        notes.append(f"skipped {tier.name!r}: {misfit}")
    strongest = tiers[-1]
    return strongest.route(f"{reason}; {'; '.join(notes)}; no tier fits: the strongest")


def input_text(value: Any) -> str:
    """The text of the last user message of a run input (a string is its own text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for item in reversed(value):
            if isinstance(item, dict) and item.get("role", "user") == "user":
                text = _content_text(item.get("content"))
                if text:
                    return text
    return ""


def _all_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(
            _content_text(item.get("content")) for item in value if isinstance(item, dict)
        )
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
