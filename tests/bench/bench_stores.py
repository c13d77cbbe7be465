"""Benchmark the budget stores: reserve+settle pairs per second at a given concurrency.

Run ``python tests/bench/bench_stores.py [--concurrency 32] [--seconds 3]``. Redis is
measured when ``--redis-url`` (default ``redis://127.0.0.1:6379/15``) answers; its
round trips per operation are counted on the wire (every write the client sends).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentbudget.stores import BaseStore, Charge, store_from_url


class WireCounter:
    """Counts the writes (round trips) the redis-py asyncio client sends."""

    def __init__(self) -> None:
        self.writes = 0
        self._restore: Callable[[], None] | None = None

    def __enter__(self) -> WireCounter:
        from redis.asyncio.connection import AbstractConnection

        original = AbstractConnection.send_packed_command

        async def send(conn: Any, command: Any, check_health: bool = True) -> None:
            self.writes += 1
            await original(conn, command, check_health)

        AbstractConnection.send_packed_command = send  # type: ignore[method-assign]

        def restore() -> None:
            AbstractConnection.send_packed_command = original  # type: ignore[method-assign]

        self._restore = restore
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._restore is not None:
            self._restore()


async def run(store: BaseStore, concurrency: int, seconds: float) -> dict[str, float]:
    """Reserve+settle pairs from ``concurrency`` tasks for ``seconds``; return the figures.

    Call it once briefly first to warm up (connections, tables, scripts).
    """
    charges = [Charge("bench:user", 2**50, 5, 3600), Charge("bench:global", 2**50, 5, None)]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            rid = uuid.uuid4().hex
            started = time.perf_counter()
            result = await store.reserve(charges, reservation_id=rid, lease_s=60)
            assert result.ok
            await store.settle(rid, [4, 4])
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "pairs": len(latencies),
        "pairs_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def delete_namespace(url: str, prefix: str) -> None:
    """Remove every key the benchmark left in Redis (counters and settled records)."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        return
    client = aioredis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"ab:{{{prefix}}}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    except Exception:
        pass
    finally:
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    rows: list[tuple[str, dict[str, float], str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in [("memory", "memory://"), ("sqlite", f"sqlite:///{Path(tmp)}/b.db")]:
            store = store_from_url(url)
            await run(store, args.concurrency, 0.3)  # warm up
            rows.append((name, await run(store, args.concurrency, args.seconds), "-"))
            await store.close()

    prefix = f"bench-{uuid.uuid4().hex}"
    try:
        store = store_from_url(args.redis_url, prefix=prefix)
        await run(store, args.concurrency, 0.3)  # warm up: pool connections, scripts
    except Exception as exc:  # no redis package, or no server
        print(f"redis: skipped ({exc})")
    else:
        try:
            with WireCounter() as wire:
                figures = await run(store, args.concurrency, args.seconds)
            per_op = wire.writes / (2 * figures["pairs"])
            rows.append(("redis", figures, f"{per_op:.3f}"))
        finally:
            await store.close()
            await delete_namespace(args.redis_url, prefix)

    print(
        f"concurrency {args.concurrency}, {args.seconds:g} s per store, "
        f"Python {platform.python_version()}, {platform.machine()}"
    )
    header = f"{'store':<8} {'pairs':>8} {'pairs/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'RT/op':>7}"
    print(header)
    print("-" * len(header))
    for name, fig, round_trips in rows:
        print(
            f"{name:<8} {fig['pairs']:>8.0f} {fig['pairs_per_s']:>10.0f} "
            f"{fig['p50_ms']:>8.2f} {fig['p99_ms']:>8.2f} {round_trips:>7}"
        )


if __name__ == "__main__":
    asyncio.run(main())
