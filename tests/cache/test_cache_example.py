"""examples/response_cache.py does what its docstring says."""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner

import agentbudget as ab
from agentbudget.testing import reply, scripted_model

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_hits_for_the_same_user_only_until_the_namespace_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CACHE_STORE", raising=False)
    module = runpy.run_path(str(ROOT / "examples" / "response_cache.py"))
    rows = asyncio.run(module["main"]())
    assert [(user, hit) for user, hit, _, _ in rows] == [
        ("alice", False),
        ("alice", True),
        ("bob", False),
        ("alice", True),
        ("alice", False),
    ]
    paid = rows[0][2]
    assert paid == "0.003600000"  # gpt-4o: 1,200 input and 60 output tokens
    assert [saved for _, hit, _, saved in rows if hit] == [paid, paid]
    assert [cost for _, hit, cost, _ in rows if hit] == ["0", "0"]


async def test_a_guards_own_cache_wins_over_a_scopes() -> None:
    scope_cache, guard_cache = ab.ResponseCache(), ab.ResponseCache()
    model: Any = scripted_model("gpt-4o", [reply("a"), reply("b")])
    agent = Agent(name="geo", model=model)
    async with ab.budget(user="u", cache=scope_cache):
        await ab.Guard(cache=guard_cache).run(agent, "q")
        plain = await Runner.run(agent, "q")  # the scope's cache has nothing yet
    assert plain.final_output == "b" and len(model.calls) == 2
    assert len(guard_cache.store) == 1 and len(scope_cache.store) == 1  # type: ignore[arg-type]
