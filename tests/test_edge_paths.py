"""Edge paths found by an adversarial review: each test failed before its fix (money paid
charged exactly once and to the model that served it, limits before spending, delivery
that survives a bad record, a fallback that works with a provider's own token count)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx2 as httpx
import pytest
from agents import Agent
from helpers.fake_anthropic import FakeAnthropic
from helpers.fake_openai import FakeOpenAI, Turn

import agentbudget as ab
from agentbudget.routing import FallbackRouter

# -- 1. count_tokens=True defeats the FallbackRouter --------------------------------------


@dataclass
class DownAnthropic(FakeAnthropic):
    """An Anthropic that is down: every request, count_tokens included, answers 529."""

    hits: list[str] = field(default_factory=list)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.hits.append(request.url.path)
        json.loads(request.content or b"{}")
        return httpx.Response(
            529,
            headers={"retry-after-ms": "1", "request-id": "req_err"},
            json={"type": "error", "error": {"type": "overloaded_error", "message": "over"}},
        )


@pytest.mark.parametrize("count_tokens", [False, True])
async def test_a_counting_anthropic_model_that_is_down_still_falls_back(count_tokens: bool) -> None:
    # The same run without count_tokens falls back to the OpenAI model; with it, the
    # interceptor's _prepare asks the failed provider to count the input again for the
    # retry (self.inner, not the moved model), that request fails too, and the run
    # raises the provider's error instead of falling back.
    down = DownAnthropic()
    backup = FakeOpenAI(script=[Turn(output_tokens=5)])
    agent = Agent(name="a", model=down.model(count_tokens=count_tokens))
    guard = ab.Guard(
        router=FallbackRouter(["claude-sonnet-4-5", backup.model("responses", "gpt-4o-mini")])
    )  # type: ignore[list-item]
    result = await guard.run(agent, "How do I reset my password?")
    report = ab.report_of(result)
    assert report.route is not None and report.route.fallback is not None
    assert [body["model"] for body in backup.requests] == ["gpt-4o-mini"]
    # the failed call was sent once and is charged once (at its estimate)
    assert [c.model for c in report.calls] == ["claude-sonnet-4-5", "gpt-4o-mini"]


# -- 2. a previous_response_id compaction is planned at an input of zero -------------------


async def test_a_compaction_by_previous_response_id_is_refused_before_it_is_sent() -> None:
    # In compaction_mode="previous_response_id" the request carries no input, so the
    # MeteredModel plans (and checks the limits, and reserves) the call at ~0 input tokens;
    # the server compacts the whole previous conversation (1,000 input tokens here). The
    # run has 1,000 of its 1,500 input tokens left after the answer: the compaction's
    # input (at least the previous response's 1,000 + 20) cannot fit, yet it is sent and
    # only the after-call backstop trips, once the money is spent.
    from agents import SQLiteSession
    from agents.memory.openai_responses_compaction_session import (
        OpenAIResponsesCompactionSession,
    )

    server = FakeOpenAI([Turn(output_tokens=20)], input_tokens=1_000)
    session = OpenAIResponsesCompactionSession(
        "conversation-2",
        SQLiteSession("conversation-2"),
        client=server.client(),
        model="gpt-4.1",
        compaction_mode="previous_response_id",
        should_trigger_compaction=lambda context: True,
    )
    agent = Agent(name="support", model=server.model("responses"))
    guard = ab.Guard(limits=ab.Limits(max_input_tokens=1_500))
    with pytest.raises(ab.AgentBudgetExceeded):
        await guard.run(agent, "Where is my order?", session=session)
    assert server.compacted == []  # refused before the request, not after it was billed


# -- 3. a Deferred report whose build raises kills its sink's channel ---------------------


def test_a_report_that_fails_to_build_does_not_stop_the_sink_for_good() -> None:
    # _deliver builds each Deferred (item.get()) before its try block: an exception from
    # the build (RunMeter.report) escapes _pump, the channel's task dies, and every later
    # report for that sink waits forever (flush times out; close drops them).
    from agentbudget.sinks.dispatch import Deferred, SinkDispatcher

    got: list[object] = []

    class Sink:
        def record(self, report: object) -> None:
            got.append(report)

    def broken() -> object:
        raise RuntimeError("report could not be built")

    dispatcher = SinkDispatcher([Sink()], poll_s=0.01)
    try:
        dispatcher.submit(Deferred(broken))
        assert dispatcher.flush(timeout=2)
        dispatcher.submit(Deferred(lambda: "the next run's report"))
        assert dispatcher.flush(timeout=2)
        assert got == ["the next run's report"]
    finally:
        dispatcher.close(timeout=1)


# -- 4. a budget Downgrade of a compaction call -------------------------------------------


async def test_a_downgraded_compaction_is_sent_to_the_model_it_is_charged_for() -> None:
    # When a compaction call does not fit the budgets, _degrade's Downgrade builds
    # sibling_model(_CompactCall, "gpt-4o-mini"): a copy.copy of the _CompactCall whose
    # kwargs still say model="gpt-4.1". The request goes to gpt-4.1 (the expensive model)
    # while the call is priced as gpt-4o-mini, and its result is stored on the copy, so
    # _MeteredResponses.compact returns None to the session (which then fails).
    from agents import SQLiteSession
    from agents.memory.openai_responses_compaction_session import (
        OpenAIResponsesCompactionSession,
    )

    server = FakeOpenAI([Turn(output_tokens=20)], input_tokens=1_000)
    session = OpenAIResponsesCompactionSession(
        "conversation-4",
        SQLiteSession("conversation-4"),
        client=server.client(),
        model="gpt-4.1",
        compaction_mode="input",
        should_trigger_compaction=lambda context: True,
    )
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", usd="0.20")],
        on_exhausted=[ab.Downgrade("gpt-4o-mini")],
        min_output_tokens=30_000,
    )
    agent = Agent(name="support", model=server.model("responses"))
    try:
        result = await ab.Guard(budgets=budgets).run(
            agent, "Where is my order?", user="u-4", session=session
        )
        compaction = ab.report_of(result).calls[-1]
        assert compaction.agent == "compaction"
        # the model charged is the model the request went to
        assert [body["model"] for body in server.compacted] == [compaction.model]
    finally:
        await budgets.close()
