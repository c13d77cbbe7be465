"""Local models at $0: an OpenAI-compatible Chat Completions endpoint (Ollama, vLLM,
llama.cpp's server)."""

from __future__ import annotations

from typing import Any

from agents import OpenAIChatCompletionsModel
from openai import AsyncOpenAI

from ..errors import ConfigurationError

__all__ = ["LocalModel", "local_model"]


class LocalModel(OpenAIChatCompletionsModel):
    """A Chat Completions model served locally, with its declared capabilities.

    A ``Guard`` whose router uses one prices its name as a local model ($0, calls marked
    ``local``) through ``PriceTable.with_local_models``.
    """

    local = True

    def __init__(
        self,
        model: str,
        openai_client: AsyncOpenAI,
        *,
        tools: bool = True,
        structured_output: bool = True,
        context_window: int | None = None,
    ) -> None:
        super().__init__(model=model, openai_client=openai_client)
        self.tools = tools
        self.structured_output = structured_output
        self.context_window = context_window

    def __repr__(self) -> str:
        return f"local_model({self.model!r})"


def local_model(
    name: str,
    base_url: str = "http://localhost:11434/v1",
    *,
    api_key: str = "local",
    tools: bool = True,
    structured_output: bool = True,
    context_window: int | None = None,
    openai_client: AsyncOpenAI | None = None,
) -> LocalModel:
    """An OpenAI-compatible Chat Completions model at ``base_url`` (Ollama's default).

    Args:
        name: the model's name on the server (``"llama3.1"``).
        base_url: the server's ``/v1`` URL.
        api_key: sent as the bearer token (local servers usually ignore it).
        tools: the model can call tools (routers skip it for agents with tools if not).
        structured_output: the model honours a JSON schema.
        context_window: its context window in tokens (routers skip it for longer inputs).
        openai_client: a client to use instead of one built from ``base_url``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"local_model needs a model name, got {name!r}")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
    if context_window is not None and (
        isinstance(context_window, bool)
        or not isinstance(context_window, int)
        or context_window <= 0
    ):
        raise ConfigurationError(f"context_window must be a positive int, got {context_window!r}")
    client = openai_client or AsyncOpenAI(base_url=base_url, api_key=api_key)
    return LocalModel(
        name,
        client,
        tools=tools,
        structured_output=structured_output,
        context_window=context_window,
    )


def local_names(router: Any) -> set[str]:
    """The names of the local models a router (and the routers it wraps) may route to."""
    names: set[str] = set()
    seen: set[int] = set()
    stack = [router]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, LocalModel):
            names.add(item.model)
            continue
        model = getattr(item, "model", None)
        if isinstance(model, LocalModel):
            names.add(model.model)
        for attribute in ("router", "inner", "tiers", "chain"):
            value = getattr(item, attribute, None)
            if isinstance(value, list | tuple):
                stack.extend(value)
            elif value is not None and not isinstance(value, str):
                stack.append(value)
    return names
