"""The routing examples run offline and route as they say."""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_model_routing_example_uses_all_three_tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    module = runpy.run_path(str(EXAMPLES / "model_routing.py"))
    rows = asyncio.run(module["main"]())
    assert [(tier, model, local) for tier, model, _, local in rows] == [
        ("local", "llama3.1", True),
        ("cheap", "gpt-4o-mini", False),
        ("strong", "gpt-4o", False),
    ]
    # 60 in / 40 out: $0 locally, then the cloud models' own rates
    assert [cost for _, _, cost, _ in rows] == ["0", "0.000033000", "0.000550000"]


def test_claude_router_example_sends_complex_work_to_claude(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    module = runpy.run_path(str(EXAMPLES / "claude_router.py"))
    rows = asyncio.run(module["main"]())
    assert [(tier, model) for tier, model, _ in rows] == [
        ("simple", "gpt-4o-mini"),
        ("complex", "claude-sonnet-4-5"),
    ]
    # claude-sonnet-4-5: 80 in x $3 + 300 out x $15 per 1M tokens
    assert rows[1][2] == "0.004740000"
