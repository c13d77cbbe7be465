"""The context budget's cost per LLM call on a 400-item history.

Run with ``nox -s bench`` or ``python tests/bench/bench_context.py [ROUNDS]``. Prints the
median time of one ``ContextBudget`` filter call (a 4,000-token budget over 100 turns of
user question, tool call, 3,000-character tool output and answer: 400 items, ~88,000
tokens) in three cases: the SDK's case, where the same item objects come back on every
call (counts cached by identity); fresh copies of the items on every call (counts cached
by content); and no trimming needed (a budget above the input). Acceptance: < 2 ms.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from agents import Agent
from agents.run_config import CallModelData, ModelInputData

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the helpers

from helpers.context_history import INSTRUCTIONS, history

import agentbudget as ab


def median_ms(budget: ab.ContextBudget, make: Any, rounds: int) -> float:
    agent = Agent(name="bench", instructions=INSTRUCTIONS, model="gpt-4o")
    budget(make())  # warm: encoder, counts
    times = []
    for _ in range(rounds):
        data = make()
        started = time.perf_counter()
        budget(data)
        times.append(time.perf_counter() - started)
    del agent
    return statistics.median(times) * 1000


def main(rounds: int = 200) -> None:
    items = history(100)
    assert len(items) == 400
    agent = Agent(name="bench", instructions=INSTRUCTIONS, model="gpt-4o")

    def same() -> CallModelData[Any]:
        return CallModelData(
            model_data=ModelInputData(input=list(items), instructions=INSTRUCTIONS),
            agent=agent,
            context=None,
        )

    def copies() -> CallModelData[Any]:
        return CallModelData(
            model_data=ModelInputData(input=copy.deepcopy(items), instructions=INSTRUCTIONS),
            agent=agent,
            context=None,
        )

    budget = ab.ContextBudget(4_000, keep_recent_turns=2, trim_tool_outputs_over=500)
    fit = budget.fit(items, INSTRUCTIONS)
    print(
        f"400 items, {fit.tokens_before:,} tokens -> {fit.tokens_after:,} "
        f"({len(fit.input)} items) under a 4,000-token budget"
    )
    print(f"same item objects per call: {median_ms(budget, same, rounds):.3f} ms (median)")
    print(f"fresh copies per call:      {median_ms(budget, copies, rounds // 4):.3f} ms (median)")
    roomy = ab.ContextBudget(200_000)
    print(f"no trimming needed:         {median_ms(roomy, same, rounds):.3f} ms (median)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
