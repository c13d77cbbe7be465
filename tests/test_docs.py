"""Every ```python block in the docs runs, and the examples do what they say."""

from __future__ import annotations

import asyncio
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name.startswith("_") or page.name == "testing.md":
            continue  # testing.md's blocks are pytest files: tests/plugin runs them
        for n, match in enumerate(BLOCK.finditer(page.read_text()), 1):
            blocks.append((f"{page.name}#{n}", match.group(1)))
    return blocks


@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[b[0] for b in python_blocks()])
def test_docs_code_runs(where: str, code: str, close_sdk_loop: None) -> None:
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})


def test_circuit_breakers_example_stops_each_runaway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    module = runpy.run_path(str(ROOT / "examples" / "circuit_breakers.py"))
    reports = asyncio.run(module["main"]())
    assert [(r.agent, r.outcome, r.tripped_limit) for r in reports] == [
        ("researcher", "tripped", "max_tool_calls"),
        ("writer", "tripped", "max_output_tokens"),
        ("reporter", "tripped", "max_seconds"),
    ]
    assert reports[0].tool_calls == 3
    assert 100 <= reports[1].output_tokens <= 110


def test_per_user_budgets_example_downgrades_then_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BUDGET_STORE", raising=False)
    module = runpy.run_path(str(ROOT / "examples" / "per_user_budgets.py"))
    log = asyncio.run(module["main"]())
    alice = log["alice"]
    assert alice[:2] == ["gpt-4o", "gpt-4o"]
    assert "gpt-4o-mini (downgraded)" in alice
    assert alice[-1].startswith("refused: You have used today's allowance")
    assert log["bob"] == ["gpt-4o"]
