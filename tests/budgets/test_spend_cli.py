from __future__ import annotations

from pathlib import Path

import pytest
from agents import Agent, ModelSettings

import agentbudget as ab
from agentbudget.cli import main
from agentbudget.testing import reply, scripted_model


async def test_spend_shows_spent_reserved_and_remaining_per_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/spend.db"
    budgets = ab.Budgets(
        store=url,
        allowances=[
            ab.Allowance(per="user", window="day", tokens=50_000),
            ab.Allowance(per="global", window="month", usd="100"),
        ],
    )
    agent = Agent(
        name="a",
        model=scripted_model("gpt-4o", [reply("x", input_tokens=1_200, output_tokens=300)]),
        model_settings=ModelSettings(max_tokens=500),
    )
    await ab.Guard(budgets=budgets).run(agent, "hi", user="u-42")
    await budgets.close()

    args = [
        "spend",
        "--store",
        url,
        "--allowance",
        "user:day:tokens=50000",
        "--allowance",
        "global:month:usd=100",
    ]
    assert await _main([*args, "--user", "u-42"]) == 0
    out = capsys.readouterr().out.splitlines()
    user_row = next(line.split() for line in out if line.startswith("user/day"))
    global_row = next(line.split() for line in out if line.startswith("global/month"))
    assert user_row[1] == "u-42" and user_row[4:] == ["50,000", "1,500", "0", "48,500"]
    # 1,200 x $2.50 + 300 x $10.00 per 1M tokens = $0.006, shown as prices shows rates
    assert global_row[4:] == ["100.00", "0.006", "0.00", "99.994"]
    assert await _main(args[:3]) == 2  # no allowances given


async def _main(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(main, argv)
