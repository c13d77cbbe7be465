"""A separate OS process running guarded runs against a shared budget store.

Usage: python budget_worker.py STORE_URL PREFIX LIMIT RUNS [hang]
Prints the number of runs admitted. With ``hang``, the first call reserves its worst
case and then hangs forever (the test kills the process).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from agents import Agent, ModelSettings, set_tracing_disabled
from agents.testing import ModelStep

import agentbudget as ab
from agentbudget.testing import reply, scripted_model
from agentbudget.tokens import estimate_call_input

QUESTION = "What is the refund policy?"
INPUT = estimate_call_input("gpt-4o", None, [{"role": "user", "content": QUESTION}]).tokens


def store_options(url: str, prefix: str) -> dict[str, Any]:
    return {"prefix": prefix} if url.startswith("redis") else {}


async def main() -> None:
    url, prefix, limit, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    hang = len(sys.argv) > 5 and sys.argv[5] == "hang"
    set_tracing_disabled(True)
    budgets = ab.Budgets(
        store=url,
        store_options=store_options(url, prefix),
        lease_s=1,
        allowances=[ab.Allowance(per="user", window="total", tokens=limit)],
    )
    guard = ab.Guard(budgets=budgets)

    async def forever(_call: Any) -> Any:
        print("reserved", flush=True)
        await asyncio.sleep(3600)
        return reply("never")

    async def one() -> bool:
        # billed exactly its worst case: the estimated input and the whole output bound
        billed = reply("ok", input_tokens=INPUT, output_tokens=100)
        steps = [ModelStep.respond(forever)] if hang else [billed]
        agent = Agent(
            name="w",
            model=scripted_model("gpt-4o", steps),
            model_settings=ModelSettings(max_tokens=100),
        )
        try:
            await guard.run(agent, QUESTION, user="shared")
            return True
        except ab.BudgetExhausted:
            return False

    results = await asyncio.gather(*(one() for _ in range(runs)))
    print(sum(results), flush=True)
    await budgets.close()


if __name__ == "__main__":
    asyncio.run(main())
