"""A second process for the Redis acceptance test: runs one question through a
Redis-backed cache and prints what it paid."""

from __future__ import annotations

import asyncio
import sys

from agents import Agent, set_tracing_disabled

import agentbudget as ab
from agentbudget.testing import reply, scripted_model


async def main(url: str, prefix: str, question: str) -> None:
    set_tracing_disabled(True)
    store = ab.cache.RedisCacheStore(url, prefix=prefix)
    cache = ab.ResponseCache(store)
    model = scripted_model("gpt-4o", [reply("Paris.", input_tokens=1_000, output_tokens=100)])
    result = await ab.Guard(cache=cache).run(Agent(name="geo", model=model), question, user="u-1")
    cache.close()  # the write lands before the process exits
    report = ab.report_of(result)
    print(report.cache_hit, report.cost_usd, len(model.calls))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
