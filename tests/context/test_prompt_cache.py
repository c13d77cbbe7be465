"""Provider prompt caching: a stable ``prompt_cache_key`` per tenant and agent, and
``cache_lint``."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import pytest
from agents import Agent, ModelSettings, function_tool
from helpers.fake_openai import FakeOpenAI, Turn

import agentbudget as ab
from agentbudget.context import cache_lint
from agentbudget.testing import reply, scripted_model

APIS = ["responses", "chat"]


def key(prefix: str, tenant: str, agent: str) -> str:
    digest = hashlib.sha256((tenant + "\0" + agent).encode()).hexdigest()[:24]
    return f"{prefix}:{digest}"


def agent_on(server: FakeOpenAI, api: str, **settings: Any) -> Agent[Any]:
    return Agent(name="support", model=server.model(api), model_settings=ModelSettings(**settings))


@pytest.mark.parametrize("api", APIS)
async def test_one_stable_key_per_tenant_and_agent(api: str) -> None:
    server = FakeOpenAI([Turn(output_tokens=5)])
    guard = ab.Guard(prompt_cache_key="acme")
    await guard.run(agent_on(server, api), "hi", user="u-1")
    await guard.run(agent_on(server, api), "hi again", user="u-1")
    await guard.run(agent_on(server, api), "hi", user="u-2")
    await guard.run(agent_on(server, api), "hi", user="u-2", team="t-9")
    keys = [body["prompt_cache_key"] for body in server.requests]
    assert keys == [
        key("acme", "u-1", "support"),
        key("acme", "u-1", "support"),  # the same across runs: the cache is shared
        key("acme", "u-2", "support"),
        key("acme", "t-9", "support"),  # the team is the tenant when there is one
    ]
    assert not any("u-1" in k or "u-2" in k or "t-9" in k for k in keys)  # ids hashed


async def test_without_it_the_sdk_decides_and_a_users_own_key_is_kept() -> None:
    server = FakeOpenAI([Turn(output_tokens=5)])
    await ab.Guard().run(agent_on(server, "responses"), "hi", user="u-1")
    own = agent_on(server, "responses", extra_args={"prompt_cache_key": "mine"})
    await ab.Guard(prompt_cache_key="acme").run(own, "hi", user="u-1")
    first, second = server.requests
    assert not str(first.get("prompt_cache_key", "")).startswith("acme")
    assert second["prompt_cache_key"] == "mine"


async def test_other_model_classes_get_no_key() -> None:
    seen: list[Any] = []
    model = scripted_model("gpt-4o", [reply("ok")])
    agent = Agent(name="support", model=model)
    result = await ab.Guard(prompt_cache_key="acme").run(agent, "hi", user="u-1")
    seen = [call.model_settings.extra_args for call in model.calls]
    assert result.final_output == "ok"
    assert all(not args or "prompt_cache_key" not in args for args in seen)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 33, 42, "émoji"])
def test_a_bad_prefix_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ab.ConfigurationError, match="prompt_cache_key must be"):
        ab.Guard(prompt_cache_key=bad)


# -- cache_lint -----------------------------------------------------------------------------


@function_tool
def lookup(q: str) -> str:
    """Look up."""
    return q


@pytest.mark.parametrize(
    ("instructions", "fragment"),
    [
        ("Today is 2026-12-02 09:30. You help customers.", "timestamp"),
        ("Session id: 5f0c9a1e-1b2c-4d3e-9f00-123456789abc. You help.", "UUID"),
        ("request_id=abc123 You help customers with their orders.", "per-request id"),
        ("User: Alice. " + "You help customers with their orders. " * 5, "per-user text"),
    ],
)
def test_cache_lint_finds_what_breaks_prefix_caching(instructions: str, fragment: str) -> None:
    agent = Agent(name="support", instructions=instructions)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = cache_lint(agent)
    assert any(fragment in warning for warning in found)
    assert [str(w.message) for w in caught] == found  # each one also warned


def test_cache_lint_on_dynamic_instructions_and_duplicate_tools() -> None:
    agent = Agent(name="support", instructions=lambda ctx, agent: "hi", tools=[lookup, lookup])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = cache_lint(agent)
    assert len(found) == 2
    assert "function" in found[0] and "duplicate tool names" in found[1]


def test_cache_lint_is_quiet_on_a_cache_friendly_agent() -> None:
    agent = Agent(
        name="support",
        instructions="You help customers with their orders. Be brief and exact.",
        tools=[lookup],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache_lint(agent) == []
