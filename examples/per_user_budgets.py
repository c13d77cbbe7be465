"""Per-user budgets: three users share a daily token allowance policy, offline.

Alice asks a lot and is moved to a cheaper model, then refused; Bob stays well inside;
the global monthly dollar cap applies to everyone. Runs on scripted models; set
BUDGET_STORE=redis://127.0.0.1:6379/0 or sqlite:///spend.db to share budgets across
processes.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from agents import Agent, ModelSettings, set_tracing_disabled

import agentbudget as ab
from agentbudget.money import nanos_to_usd
from agentbudget.testing import reply, scripted_model


def support_agent(model: str = "gpt-4o") -> Agent:
    return Agent(
        name="support",
        instructions="Answer the customer's question.",
        model=scripted_model(
            model, [reply("Here is your answer.", input_tokens=30, output_tokens=200)]
        ),
        model_settings=ModelSettings(max_tokens=200),
    )


def policy() -> ab.Budgets:
    return ab.Budgets(
        store=os.environ.get("BUDGET_STORE", "memory://"),
        allowances=[
            ab.Allowance(per="user", window="day", usd="0.006"),
            ab.Allowance(per="global", window="month", usd="100"),
        ],
        on_exhausted=[
            ab.Downgrade(
                scripted_model(
                    "gpt-4o-mini",
                    [
                        reply("Here is a shorter answer.", input_tokens=30, output_tokens=200)
                        for _ in range(30)
                    ],
                )
            ),
            ab.Refuse("You have used today's allowance; it resets at midnight UTC."),
        ],
        # with room for fewer than 200 output tokens, downgrade rather than cut the answer
        min_output_tokens=200,
    )


async def main() -> dict[str, list[str]]:
    set_tracing_disabled(True)
    budgets = policy()
    guard = ab.Guard(budgets=budgets)
    log: dict[str, list[str]] = {"alice": [], "bob": []}
    for user, questions in (("alice", 20), ("bob", 1)):
        for _ in range(questions):
            try:
                result = await guard.run(support_agent(), "Where is my order?", user=user)
                call = ab.report_of(result).calls[0]
                log[user].append(f"{call.model}{' (downgraded)' if call.degraded else ''}")
            except ab.BudgetExhausted as exc:
                log[user].append(f"refused: {exc.refusal}")
    for user, events in log.items():
        print(f"{user}:")
        for event, count in Counter(events).items():
            print(f"  {count:>2} x {event}")
        for row in await budgets.spend(user=user):
            if row.allowance.per == "user":
                print(f"  spent today: ${nanos_to_usd(row.spent)} of ${nanos_to_usd(row.limit)}")
    await budgets.close()
    return log


if __name__ == "__main__":
    asyncio.run(main())
