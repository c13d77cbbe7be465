"""A separate OS process that uses a store, for the multi-process tests.

``python stores_worker.py race URL PREFIX KEY LIMIT AMOUNT ATTEMPTS START_AT``
    waits until ``START_AT`` (epoch seconds), makes ATTEMPTS reserve+settle tries
    (25 in flight) and prints ``{"admitted": n}``.
``python stores_worker.py hold URL PREFIX KEY LIMIT AMOUNT LEASE_S``
    reserves once, prints ``reserved``, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from agentbudget.stores import Charge, store_from_url


def _options(url: str, prefix: str) -> dict[str, str]:
    return {"prefix": prefix} if url.startswith("redis") else {}


async def race(
    url: str, prefix: str, key: str, limit: int, amount: int, attempts: int, start_at: float
) -> int:
    store = store_from_url(url, **_options(url, prefix))
    await store.state(key)  # connect and load scripts before the start line
    gate = asyncio.Semaphore(25)
    admitted = 0

    async def attempt() -> None:
        nonlocal admitted
        async with gate:
            rid = uuid.uuid4().hex
            result = await store.reserve(
                [Charge(key, limit, amount, 3600)], reservation_id=rid, lease_s=60
            )
            if result.ok:
                admitted += 1
                await store.settle(rid, [amount])

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(attempt() for _ in range(attempts)))
    await store.close()
    return admitted


async def hold(url: str, prefix: str, key: str, limit: int, amount: int, lease_s: float) -> None:
    store = store_from_url(url, **_options(url, prefix))
    result = await store.reserve(
        [Charge(key, limit, amount, 3600)], reservation_id="doomed", lease_s=lease_s
    )
    print("reserved" if result.ok else "refused", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    mode, url, prefix, key, limit, amount = sys.argv[1:7]
    if mode == "race":
        attempts, start_at = int(sys.argv[7]), float(sys.argv[8])
        n = asyncio.run(race(url, prefix, key, int(limit), int(amount), attempts, start_at))
        print(json.dumps({"admitted": n}), flush=True)
    else:
        asyncio.run(hold(url, prefix, key, int(limit), int(amount), float(sys.argv[7])))
