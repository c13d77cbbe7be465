"""Many tasks and many processes racing for one budget: exact admission, no overspend."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers.stores_support import REDIS_URL, Env, delete_prefix, require_redis

import agentbudget
from agentbudget.stores import Charge, CounterState, store_from_url

WORKER = Path(__file__).with_name("stores_worker.py")
REPO = Path(agentbudget.__file__).resolve().parents[1]


async def test_a_thousand_tasks_get_exactly_what_fits(env: Env) -> None:
    store = env.make()
    amount, fits = 7, 300
    limit = amount * fits + amount - 1  # room for 300 and a bit, never 301
    admitted = 0

    async def one() -> None:
        nonlocal admitted
        rid = uuid.uuid4().hex
        result = await store.reserve(
            [Charge("hot", limit, amount, 3600)], reservation_id=rid, lease_s=60
        )
        if result.ok:
            admitted += 1
            await asyncio.sleep(0)
            await store.settle(rid, [amount])
        else:
            assert result.available is not None and result.available < amount

    await asyncio.gather(*(one() for _ in range(1000)))
    state = await store.state("hot")
    assert admitted == fits
    assert state == CounterState(spent=fits * amount, reserved=0)
    assert state.spent <= limit


async def test_concurrent_multi_counter_reservations_never_overspend_any_counter(
    env: Env,
) -> None:
    store = env.make()
    results: list[bool] = []

    async def one(i: int) -> None:
        rid = f"r{i}"
        charges = [Charge(f"user{i % 4}", 50, 5, 3600), Charge("team", 120, 5, 3600)]
        result = await store.reserve(charges, reservation_id=rid, lease_s=60)
        results.append(result.ok)
        if result.ok:
            await store.settle(rid, [5, 5])

    await asyncio.gather(*(one(i) for i in range(200)))
    users = [await store.state(f"user{i}") for i in range(4)]
    team = await store.state("team")
    assert sum(results) == 24  # the team allows 24; each user could take 10
    assert team == CounterState(spent=120, reserved=0)
    assert sum(u.spent for u in users) == 120
    assert all(u.spent <= 50 and u.reserved == 0 for u in users)


def _run_race(url: str, prefix: str, limit: int, amount: int, attempts: int) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start_at = time.time() + 3  # every process is connected before the start line
    args = ["race", url, prefix, "shared", str(limit), str(amount), str(attempts), str(start_at)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(4)
    ]
    admitted = []
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        admitted.append(json.loads(out.decode().strip().splitlines()[-1])["admitted"])
    return admitted


@pytest.mark.slow
async def test_four_processes_racing_on_sqlite_admit_exactly_what_fits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    amount, fits = 3, 200
    limit = amount * fits + 2
    admitted = await asyncio.to_thread(_run_race, url, "-", limit, amount, 150)
    store = store_from_url(url)
    try:
        assert sum(admitted) == fits
        assert await store.state("shared") == CounterState(spent=fits * amount, reserved=0)
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.redis
async def test_four_processes_racing_on_redis_admit_exactly_what_fits() -> None:
    require_redis()
    prefix = f"test-{uuid.uuid4().hex}"
    amount, fits = 3, 200
    limit = amount * fits + 2
    store = store_from_url(REDIS_URL, prefix=prefix)
    try:
        admitted = await asyncio.to_thread(_run_race, REDIS_URL, prefix, limit, amount, 150)
        assert sum(admitted) == fits
        assert await store.state("shared") == CounterState(spent=fits * amount, reserved=0)
    finally:
        await store.close()
        await delete_prefix(prefix)


def _start_and_kill_holder(url: str, prefix: str, amount: int, lease_s: float) -> None:
    args = ["hold", url, prefix, "shared", "100", str(amount), str(lease_s)]
    with subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"reserved"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
async def test_a_killed_process_frees_its_sqlite_reservation_after_the_lease(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/kill.db"
    await asyncio.to_thread(_start_and_kill_holder, url, "-", 40, 30)
    now = store_from_url(url)
    later = store_from_url(url, clock=lambda: time.time() + 31)  # past the 30 s lease
    try:
        assert await now.state("shared") == CounterState(0, 40)
        refused = await now.reserve([Charge("shared", 100, 100)], reservation_id="a", lease_s=5)
        assert (refused.ok, refused.available) == (False, 60)
        assert await later.state("shared") == CounterState(0, 0)
        assert (await later.reserve([Charge("shared", 100, 100)], reservation_id="b", lease_s=5)).ok
    finally:
        await now.close()
        await later.close()


@pytest.mark.slow
@pytest.mark.redis
async def test_a_killed_process_frees_its_redis_reservation_after_the_lease() -> None:
    require_redis()
    prefix = f"test-{uuid.uuid4().hex}"
    store = store_from_url(REDIS_URL, prefix=prefix)
    try:
        await asyncio.to_thread(_start_and_kill_holder, REDIS_URL, prefix, 40, 1.5)
        assert await store.state("shared") == CounterState(0, 40)
        refused = await store.reserve([Charge("shared", 100, 100)], reservation_id="a", lease_s=5)
        assert (refused.ok, refused.available) == (False, 60)
        await asyncio.sleep(1.7)
        assert await store.state("shared") == CounterState(0, 0)
        assert (await store.reserve([Charge("shared", 100, 100)], reservation_id="b", lease_s=5)).ok
    finally:
        await store.close()
        await delete_prefix(prefix)
