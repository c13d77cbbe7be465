"""``ClassifierRouter``: a cheap agent labels the request simple or complex."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from agents import Agent, Model, ModelSettings, Runner
from cachetools import TTLCache

from ..errors import AgentBudgetExceeded, ConfigurationError
from ..report import Route, report_of
from .base import RouteRequest, Tier, check_tiers, fitting_tier

__all__ = ["CLASSIFIER_INSTRUCTIONS", "ClassifierRouter"]

logger = logging.getLogger("agentbudget")

CLASSIFIER_INSTRUCTIONS = (
    "You route requests to an AI assistant. Answer with one word. Answer 'simple' when a "
    "small, cheap model answers the request well: short factual questions, translations of "
    "a phrase, formatting, rewording, short messages, account and support how-tos. Answer "
    "'complex' when it needs careful reasoning, expertise or long structured work: "
    "debugging, design, security, legal, medical or financial advice, proofs, multi-step "
    "analysis, long or constrained writing. When unsure, answer 'complex'."
)


class ClassifierRouter:
    """Routes by a cheap classifier agent's label, once per run.

    The classifier runs inside the governed run, before the routed agent: its call is a
    separate line of the run's report (its agent's name), counts against the run's limits
    and the user's budgets, and ``route.classifier_cost_usd`` says what it cost. Labels
    are cached per normalised input (lower case, single spaces) for ``ttl`` seconds. A
    failure (an error, or an answer that is neither label) routes to the strong tier; so
    does a streamed run's uncached request (a classifier cannot run before
    ``run_streamed`` returns).

    Args:
        classifier: the labelling agent, or a model (name or ``Model``) for the default
            one (``CLASSIFIER_INSTRUCTIONS``, at most 4 output tokens).
        simple: the cheap tier's model (or ``Tier``).
        complex: the strong tier's model (or ``Tier``).
        ttl: seconds a label is cached; 0 disables the cache.
        maxsize: labels kept at most.
        timer: the cache's clock (tests inject one).
    """

    def __init__(
        self,
        classifier: Agent[Any] | str | Model = "gpt-4o-mini",
        *,
        simple: str | Model | Tier = "gpt-4o-mini",
        complex: str | Model | Tier = "gpt-4o",
        ttl: float = 3600,
        maxsize: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(classifier, Agent):
            self.classifier = classifier
        elif isinstance(classifier, str | Model) and classifier:
            self.classifier = Agent(
                name="route-classifier",
                instructions=CLASSIFIER_INSTRUCTIONS,
                model=classifier,
                model_settings=ModelSettings(max_tokens=16, temperature=0),
            )
        else:
            raise ConfigurationError(
                f"classifier must be an Agent, a model name or a Model, got {classifier!r}"
            )
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0:
            raise ConfigurationError(f"ttl must be seconds >= 0, got {ttl!r}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize <= 0:
            raise ConfigurationError(f"maxsize must be a positive int, got {maxsize!r}")
        self.tiers = check_tiers((Tier.of("simple", simple), Tier.of("complex", complex)))
        self.ttl = float(ttl)
        self._cache: TTLCache[str, str] | None = (
            TTLCache(maxsize=maxsize, ttl=ttl, timer=timer) if ttl > 0 else None
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClassifierRouter({self.classifier.name!r}, tiers={[t.name for t in self.tiers]})"

    @property
    def strongest(self) -> Tier:
        return self.tiers[-1]

    def _cached(self, key: str) -> str | None:
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.get(key)

    def _store(self, key: str, label: str) -> None:
        if self._cache is not None:
            with self._lock:
                self._cache[key] = label

    def _route_for(self, request: RouteRequest, label: str, reason: str, **extra: Any) -> Route:
        index = 0 if label == "simple" else len(self.tiers) - 1
        route = fitting_tier(self.tiers, index, request, reason)
        return route.model_copy(update=extra) if extra else route

    async def route(self, request: RouteRequest) -> Route:
        key = _normalised(request.text)
        label = self._cached(key)
        if label is not None:
            return self._route_for(request, label, f"classifier: {label} (cached)")
        try:
            result = await Runner.run(self.classifier, request.text or str(request.input))
        except AgentBudgetExceeded:
            raise  # a limit stopped the run: the run stops, not only the classifier
        except Exception as exc:
            logger.warning("agentbudget: route classifier failed (%s); strong tier", exc)
            return self._route_for(
                request, "complex", f"classifier failed ({type(exc).__name__}): strong tier"
            )
        cost = _cost(result)
        answer = str(result.final_output or "").strip().lower()
        found = [label for label in ("simple", "complex") if label in answer]
        if len(found) != 1:
            return self._route_for(
                request,
                "complex",
                f"classifier answered {answer[:40]!r}: strong tier",
                classifier_cost_usd=cost,
            )
        self._store(key, found[0])
        return self._route_for(
            request, found[0], f"classifier: {found[0]}", classifier_cost_usd=cost
        )

    def route_sync(self, request: RouteRequest) -> Route:
        """A cached label, else the strong tier (a streamed run cannot wait for the classifier)."""
        label = self._cached(_normalised(request.text))
        if label is not None:
            return self._route_for(request, label, f"classifier: {label} (cached)")
        return self._route_for(request, "complex", "streamed run, not classified yet: strong tier")


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _cost(result: Any) -> Decimal | None:
    try:
        return report_of(result).cost_usd
    except LookupError:
        return None
