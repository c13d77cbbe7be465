"""Budgets tests run against every store; the store fixtures live in tests/stores."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stores"))

from faults import private_redis_server
from stores_support import (
    STORE_KINDS,
    Env,
    FakeClock,
    RedisServer,
    store_env,
)

from agentbudget.testing import reply, tool_call
from agentbudget.tokens import estimate_call_input, tool_schema


@pytest.fixture(params=STORE_KINDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Every store kind (Redis: skipped when unreachable, failing under CI=true)."""
    async for environment in store_env(request.param, tmp_path):
        yield environment


@pytest.fixture(scope="session")
def private_redis() -> Iterator[RedisServer]:
    """One private ``redis-server`` per test session, for tests that pause or slow it."""
    with private_redis_server() as server:
        yield server


def billed(model: str, *, output_tokens: int, tool: str | None = None) -> Callable[[Any], Any]:
    """A scripted step billed as a provider would: the input as tiktoken counts it, and at
    most the output bound the call was sent with."""

    def respond(call: Any) -> Any:
        schemas = [tool_schema(t) for t in call.tools] + [tool_schema(h) for h in call.handoffs]
        tokens = estimate_call_input(model, call.system_instructions, call.input, schemas).tokens
        out = min(output_tokens, call.model_settings.max_tokens or output_tokens)
        if tool is not None:
            return tool_call(tool, {"q": "x"}, input_tokens=tokens, output_tokens=out)
        return reply("answer", input_tokens=tokens, output_tokens=out)

    return respond


__all__ = ["Env", "FakeClock", "billed"]
