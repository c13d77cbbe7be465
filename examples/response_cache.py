"""Response cache: a repeated question is answered for $0, never across users, offline.

Alice asks the same question twice: the second answer comes from the cache. Bob asks the
same question: his run goes to the model, because answers are scoped per user. Bumping
the namespace (new instructions deployed, data refreshed) invalidates everything.
Set CACHE_STORE=sqlite:///cache.db or redis://127.0.0.1:6379/0 to share the cache
between processes.
"""

from __future__ import annotations

import asyncio
import os

from agents import Agent, set_tracing_disabled

import agentbudget as ab
from agentbudget.testing import reply, scripted_model


def support_agent() -> Agent:
    return Agent(
        name="support",
        instructions="Answer the customer's question in one sentence.",
        model=scripted_model(
            "gpt-4o",
            [
                reply("Orders ship within two days.", input_tokens=1_200, output_tokens=60)
                for _ in range(10)
            ],
        ),
    )


async def main() -> list[tuple[str, bool, str, str]]:
    """Returns one row per run: (user, cache hit, cost, saved)."""
    set_tracing_disabled(True)
    store = os.environ.get("CACHE_STORE", "memory://")
    guard = ab.Guard(cache=ab.ResponseCache(store, ttl=3600, namespace="faq-v1"))
    agent = support_agent()
    rows = []
    for user in ("alice", "alice", "bob", "alice"):
        result = await guard.run(agent, "When will my order ship?", user=user)
        report = ab.report_of(result)
        rows.append((user, report.cache_hit, str(report.cost_usd), str(report.saved_usd)))
    # A new namespace: nothing stored under "faq-v1" is served any more.
    bumped = ab.Guard(cache=ab.ResponseCache(guard.cache.store, namespace="faq-v2"))
    result = await bumped.run(agent, "When will my order ship?", user="alice")
    report = ab.report_of(result)
    rows.append(("alice", report.cache_hit, str(report.cost_usd), str(report.saved_usd)))
    return rows


if __name__ == "__main__":
    for user, hit, cost, saved in asyncio.run(main()):
        print(f"{user:<6} {'hit ' if hit else 'miss'} cost ${cost:<12} saved ${saved}")
