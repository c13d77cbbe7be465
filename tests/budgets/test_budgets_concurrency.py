"""Zero overspend under concurrency: many tasks, many OS processes, crashed processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, ModelSettings
from helpers.stores_support import REDIS_URL, Env, delete_prefix, require_redis

import agentbudget as ab
from agentbudget.budgets import counter_key
from agentbudget.testing import reply, scripted_model
from agentbudget.tokens import estimate_call_input

QUESTION = "What is the refund policy?"
WORKER = Path(__file__).with_name("budget_worker.py")
# Each run reserves its worst case - the estimated input and a 100-token output bound - and
# is billed exactly that, so the number of runs that fit is exact whatever the interleaving.
PER_RUN = estimate_call_input("gpt-4o", None, [{"role": "user", "content": QUESTION}]).tokens + 100


def run_agent() -> Agent[Any]:
    return Agent(
        name="w",
        model=scripted_model(
            "gpt-4o", [reply("ok", input_tokens=PER_RUN - 100, output_tokens=100)]
        ),
        model_settings=ModelSettings(max_tokens=100),
    )


async def test_1000_concurrent_runs_never_overspend(env: Env) -> None:
    fits = 137
    limit = PER_RUN * fits + PER_RUN // 2
    b = ab.Budgets(
        store=env.make(),
        allowances=[ab.Allowance(per="user", window="total", tokens=limit)],
        min_output_tokens=100,  # a whole run or none: the scripted model ignores the bound
    )
    guard = ab.Guard(budgets=b)

    async def one() -> bool:
        try:
            await guard.run(run_agent(), QUESTION, user="shared")
            return True
        except ab.BudgetExhausted:
            return False

    admitted = sum(await asyncio.gather(*(one() for _ in range(1_000))))
    (row,) = await b.spend(user="shared")
    assert admitted == fits
    assert row.spent == PER_RUN * fits <= limit
    assert row.reserved == 0


def spawn(url: str, prefix: str, limit: int, runs: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, prefix, str(limit), str(runs), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def shared_store(kind: str, tmp_path: Path, prefix: str) -> tuple[str, dict[str, Any]]:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db", {}
    require_redis()
    return REDIS_URL, {"prefix": prefix}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def test_four_processes_racing_never_overspend(kind: str, tmp_path: Path) -> None:
    prefix = f"test-procs-{os.getpid()}-{time.time_ns()}"
    url, options = shared_store(kind, tmp_path, prefix)
    fits = 23
    limit = PER_RUN * fits + 7
    procs = [spawn(url, prefix, limit, 40) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    admitted = sum(int(out.strip().splitlines()[-1]) for out, _ in outs)
    b = ab.Budgets(
        store=url,
        store_options=options,
        allowances=[ab.Allowance(per="user", window="total", tokens=limit)],
    )
    try:
        (row,) = await b.spend(user="shared")
        assert row.reserved == 0
        assert row.spent <= limit
        assert admitted == fits and row.spent == PER_RUN * fits
    finally:
        await b.close()
        if kind == "redis":
            await delete_prefix(prefix)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_live_process_keeps_its_hold_and_a_killed_one_frees_it_after_the_lease(
    kind: str, tmp_path: Path
) -> None:
    prefix = f"test-kill-{os.getpid()}-{time.time_ns()}"
    url, options = shared_store(kind, tmp_path, prefix)
    limit = PER_RUN * 10
    proc = spawn(url, prefix, limit, 1, "hang")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "reserved"
    allowance = ab.Allowance(per="user", window="total", tokens=limit)
    b = ab.Budgets(store=url, store_options=options, allowances=[allowance])
    try:
        key = counter_key(allowance, "shared", "total", "tokens")
        assert (await b.store.state(key)).reserved == PER_RUN
        await asyncio.sleep(1.3)  # past the 1 s lease: the live worker keeps renewing it
        assert (await b.store.state(key)).reserved == PER_RUN
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert (await b.store.state(key)).reserved == PER_RUN  # held until the lease passes
        await asyncio.sleep(1.3)  # the worker's lease is 1 s
        state = await b.store.state(key)
        assert state.reserved == 0 and state.spent == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        await b.close()
        if kind == "redis":
            await delete_prefix(prefix)
