"""Model resolution: which model serves a call, and the name it is priced by.

One place for it: the run loop's model for each agent (``model_name``), and the model
that replaces it when a budget's ``Downgrade``, a router's route (``routing.stage``) or a
``FallbackRouter``'s next model swaps a call to another model (``replacement``).
"""

from __future__ import annotations

import copy
from typing import Any

from agents import Agent, Model, ModelProvider, RunConfig
from agents.models import get_default_model
from agents.models.openai_responses import OpenAIResponsesModel, OpenAIResponsesWSModel

from .errors import ConfigurationError

__all__ = ["model_name", "price_name", "replacement", "sibling_model"]


def model_name(
    agent: Agent[Any],
    run_config: RunConfig | dict[str, Any] | None,
    model: Model | None = None,
) -> str:
    """The name a run's call to ``agent`` is priced by, resolved as the SDK resolves models:
    the run config's model, else the agent's, else the SDK's default.

    ``run_config`` may be a dict, as ``Runner.run`` accepts one. ``model`` is the ``Model``
    the SDK resolved, when it built one from a name.
    """
    if isinstance(run_config, dict):
        configured: Any = run_config.get("model")
    else:
        configured = run_config.model if run_config is not None else None
    if configured is None:
        configured = agent.model
    if isinstance(configured, str):
        return configured
    if configured is None:
        return get_default_model()
    return price_name(model if model is not None else configured)


def price_name(model: Model) -> str:
    """The name a ``Model`` instance's calls are priced by: its ``model`` attribute (the
    SDK's model classes keep their model name there), else its class name."""
    name = getattr(model, "model", None)
    return name if isinstance(name, str) else type(model).__name__


def sibling_model(model: Model, name: str) -> Model:
    """``name`` served by a model of the same class and client (or settings) as ``model``."""
    if type(model) is OpenAIResponsesWSModel:
        options = getattr(model, "_websocket_options", None)
        return OpenAIResponsesWSModel(name, model._client, websocket_options=options)
    if type(model) is OpenAIResponsesModel:
        return OpenAIResponsesModel(name, model._client)
    if isinstance(getattr(model, "model", None), str):
        # OpenAIChatCompletionsModel, LitellmModel and most others keep their client and
        # settings in attributes next to ``model``: copy them, change the name.
        sibling = copy.copy(model)
        sibling.model = name  # type: ignore[attr-defined]
        return sibling
    raise ConfigurationError(
        f"Downgrade({name!r}) cannot build a {type(model).__name__} for {name!r}: give "
        "Downgrade a Model instance instead of a name"
    )


def replacement(
    current: Model, target: str | Model, provider: ModelProvider | None
) -> tuple[Model, str]:
    """The ``Model`` that serves ``target`` in place of ``current``, and its price name.

    A ``Model`` target is used as given. A name goes to ``provider`` when the run's model
    provider built ``current`` (so the replacement comes from the same provider); when
    ``current`` is a ``Model`` instance the user gave (``provider`` is None), it is served
    by a model of the same class and client.
    """
    if isinstance(target, Model):
        return target, price_name(target)
    if provider is None:
        return sibling_model(current, target), target
    return provider.get_model(target), target
