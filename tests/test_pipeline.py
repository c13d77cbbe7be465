"""The governed run pipeline: one path (begin -> stages -> SDK -> finish) for every run.

Stages are how the cache, the router and context budgets plug in; these tests drive the
stage interface with small stages of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from agents import Agent, Runner

import agentbudget as ab
from agentbudget.pipeline import GovernedRun
from agentbudget.policy import RunPolicy, Stage, StageRun
from agentbudget.report import RunReport
from agentbudget.testing import reply, scripted_model


class Recorder:
    """A stage that records what it saw, and optionally changes the run."""

    def __init__(self, *, new_input: str | None = None, wait: bool = False) -> None:
        self.new_input = new_input
        self.wait = wait
        self.events: list[tuple[str, Any]] = []

    def begin(self, run: StageRun) -> Any:
        self.events.append(("begin", (run.streamed, run.user, run.team, run.input)))
        if self.new_input is not None:
            run.input = self.new_input
        if self.wait:
            return self._later()
        return None

    async def _later(self) -> None:
        await asyncio.sleep(0)
        self.events.append(("awaited", None))

    def finish(self, run: StageRun, report: RunReport, result: Any) -> None:
        self.events.append(("finish", (report.outcome, result is not None)))


def with_stages(guard: ab.Guard, *stages: Any) -> ab.Guard:
    guard.policy = dataclasses.replace(guard.policy, stages=stages)
    return guard


def agent(*texts: str) -> Agent[Any]:
    return Agent(name="a", model=scripted_model("gpt-4o", [reply(t) for t in texts]))


def test_a_recorder_is_a_stage_and_a_policy_has_none_by_default() -> None:
    assert isinstance(Recorder(), Stage)
    assert RunPolicy().stages == ()


def test_run_run_sync_and_run_streamed_all_pass_through_the_stages(close_sdk_loop: None) -> None:
    stage = Recorder()
    guard = with_stages(ab.Guard(), stage)

    async def more() -> None:
        await guard.run(agent("two"), "q2", user="u", team="t")
        streamed = guard.run_streamed(agent("three"), "q3")
        async for _ in streamed.stream_events():
            pass
        await asyncio.sleep(0)  # the stream's task-done callback files the report

    asyncio.run(more())
    guard.run_sync(agent("one"), "q1", user="u")  # last: asyncio.run would orphan its loop
    assert stage.events == [
        ("begin", (False, "u", "t", "q2")),
        ("finish", ("completed", True)),
        ("begin", (True, None, None, "q3")),
        ("finish", ("completed", True)),
        ("begin", (False, "u", None, "q1")),
        ("finish", ("completed", True)),
    ]


async def test_a_stage_changes_the_input_the_sdk_sends() -> None:
    a = agent("ok")
    guard = with_stages(ab.Guard(), Recorder(new_input="rewritten"))
    await guard.run(a, "original")
    sent = a.model.first_call  # type: ignore[union-attr]
    assert sent is not None and "rewritten" in str(sent.input)
    assert "original" not in str(sent.input)


async def test_an_awaitable_from_begin_is_awaited_before_the_sdk_runs() -> None:
    stage = Recorder(wait=True)
    a = agent("ok")
    await with_stages(ab.Guard(), stage).run(a, "q")
    assert [kind for kind, _ in stage.events] == ["begin", "awaited", "finish"]


def test_a_streamed_run_refuses_an_asynchronous_begin() -> None:
    guard = with_stages(ab.Guard(), Recorder(wait=True))

    async def go() -> None:
        with pytest.raises(ab.ConfigurationError, match="streamed"):
            guard.run_streamed(agent("never"), "q")

    asyncio.run(go())


class Replay:
    """A stage that answers from elsewhere (as a cache hit does): the SDK never runs."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.reports: list[RunReport] = []

    def begin(self, run: StageRun) -> None:
        run.replay = self.result

    def finish(self, run: StageRun, report: RunReport, result: Any) -> None:
        self.reports.append(report)


async def test_a_replay_returns_without_calling_the_model() -> None:
    first = await Runner.run(agent("from before"), "q")
    empty = Agent(name="a", model=scripted_model("gpt-4o", []))  # would raise if called
    stage = Replay(first)
    result = await with_stages(ab.Guard(), stage).run(empty, "q")
    assert result is first
    assert empty.model.calls == ()  # type: ignore[union-attr]
    [report] = stage.reports
    assert report.calls == () and report.outcome == "completed"
    assert ab.report_of(result) is report


class Broken:
    def begin(self, run: StageRun) -> None:
        return None

    def finish(self, run: StageRun, report: RunReport, result: Any) -> None:
        raise RuntimeError("consumer failed")


async def test_a_failing_consumer_is_logged_and_the_others_still_get_the_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    after = Recorder()
    guard = with_stages(ab.Guard(), Broken(), after)
    with caplog.at_level(logging.ERROR, logger="agentbudget"):
        async with ab.budget() as scope:
            result = await guard.run(agent("ok"), "q")
    assert len(scope.reports) == 1 and scope.reports[0] is ab.report_of(result)
    assert after.events[-1] == ("finish", ("completed", True))
    assert "consumer failed" in caplog.text


async def test_a_tripped_run_reaches_the_stages_finish_with_its_outcome() -> None:
    stage = Recorder()
    guard = with_stages(ab.Guard(limits=ab.Limits(max_llm_calls=0)), stage)
    with pytest.raises(ab.LLMCallLimitExceeded):
        await guard.run(agent("never"), "q")
    assert stage.events[-1] == ("finish", ("tripped", False))


async def test_the_run_a_stage_sees_is_the_governed_run_with_its_policy() -> None:
    seen: list[Any] = []

    class Look:
        def begin(self, run: StageRun) -> None:
            seen.append(run)

        def finish(self, run: StageRun, report: RunReport, result: Any) -> None:
            pass

    guard = with_stages(ab.Guard(limits=ab.Limits(max_tool_calls=3)), Look())
    await guard.run(agent("ok"), "q")
    [run] = seen
    assert isinstance(run, GovernedRun)
    assert run.policy is guard.policy and run.policy.limits.max_tool_calls == 3


# -- sinks: off the call path ---------------------------------------------------------------


class SlowSink:
    def __init__(self) -> None:
        self.reports: list[RunReport] = []

    def record(self, report: RunReport) -> None:
        import time

        time.sleep(0.5)
        self.reports.append(report)


async def test_a_slow_sink_does_not_delay_the_run() -> None:
    import time

    sink = SlowSink()
    guard = ab.Guard(sinks=[sink])
    started = time.perf_counter()
    result = await guard.run(agent("ok"), "q")
    took = time.perf_counter() - started
    assert took < 0.4, f"the run waited {took:.2f}s for its sink"
    assert sink.reports == []  # not written yet: the worker is still sleeping in record()
    assert await guard.aflush(timeout=10)
    assert sink.reports == [ab.report_of(result)]
    assert await guard.aclose()


class FlakySink:
    """Raises on its first ``failures`` calls, then records."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reports: list[RunReport] = []

    def record(self, report: RunReport) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("ledger unreachable")
        self.reports.append(report)


async def test_a_failing_sink_changes_nothing_and_gets_its_reports_once_it_recovers() -> None:
    flaky = FlakySink(failures=2)
    guard = ab.Guard(sinks=[flaky])
    guard.policy.dispatcher._retry_initial_s = 0.01  # type: ignore[union-attr]
    results = [await guard.run(agent(f"answer {i}"), f"q{i}") for i in range(3)]
    assert [r.final_output for r in results] == ["answer 0", "answer 1", "answer 2"]
    assert await guard.aflush(timeout=10)
    assert flaky.reports == [ab.report_of(r) for r in results]  # each once, in order
    assert await guard.aclose()


async def test_a_scopes_stages_merge_with_the_policys_in_stage_order() -> None:
    seen: list[tuple[type, ...]] = []

    class Look:
        def begin(self, run: StageRun) -> None:
            seen.append(tuple(type(stage) for stage in run.policy.stages))

        def finish(self, run: StageRun, report: RunReport, result: Any) -> None:
            pass

    guard = ab.Guard(cache=ab.ResponseCache())
    with_stages(guard, *guard.policy.stages, Look())
    async with ab.budget(context=ab.ContextBudget(max_input_tokens=100_000)):
        await guard.run(agent("ok"), "q", user="u")
    assert seen == [(ab.ResponseCache, ab.ContextBudget, Look)]
