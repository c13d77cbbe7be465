"""The router stage on the real path: the SDK's ``OpenAIResponsesModel`` over the fake
OpenAI server, through ``Guard``, ``configure()`` and ``budget()``."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from helpers.fake_openai import FakeOpenAI, Turn

import agentbudget as ab
from agentbudget.errors import ConfigurationError
from agentbudget.routing import (
    HeuristicRouter,
    Route,
    RouteRequest,
    RouterStage,
    Tier,
)

SIMPLE = "How do I reset my password?"
COMPLEX = (
    "Why does this deadlock sometimes, and how would you redesign the locking so that "
    "transfers between the same two accounts in opposite directions never block?"
)


@function_tool
def lookup(query: str) -> str:
    """Look something up."""
    return "found"


def agent_on(server: FakeOpenAI, **kwargs: Any) -> Agent[Any]:
    return Agent(name="assistant", model=server.model("responses", "gpt-4o"), **kwargs)


async def test_simple_work_goes_to_the_cheap_tier_on_the_same_client() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=10)])
    agent = agent_on(server)
    guard = ab.Guard(router=HeuristicRouter(simple="gpt-4o-mini", complex="gpt-4o"))
    result = await guard.run(agent, SIMPLE)
    report = ab.report_of(result)
    assert [body["model"] for body in server.requests] == ["gpt-4o-mini"]
    assert report.route is not None
    assert (report.route.model, report.route.tier) == ("gpt-4o-mini", "simple")
    assert "heuristic score" in report.route.reason
    assert [call.model for call in report.calls] == ["gpt-4o-mini"]
    # priced at the cheap model's rates
    assert report.cost_usd == ab.PriceTable.default().cost(
        "gpt-4o-mini", ab.TokenUsage(input_tokens=1_000, output_tokens=10)
    )
    # the user's agent is untouched
    assert agent.model.model == "gpt-4o"  # type: ignore[union-attr]


async def test_complex_work_goes_to_the_strong_tier() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=10)])
    guard = ab.Guard(router=HeuristicRouter(simple="gpt-4o-mini", complex="gpt-4.1"))
    report = ab.report_of(await guard.run(agent_on(server), COMPLEX))
    assert [body["model"] for body in server.requests] == ["gpt-4.1"]
    assert report.route is not None and report.route.tier == "complex"


async def test_route_once_per_run_and_handoff_targets_keep_their_models() -> None:
    server = FakeOpenAI(script=[Turn(tool="transfer_to_expert"), Turn(output_tokens=5)])
    expert = Agent(name="expert", model=server.model("responses", "gpt-4.1"))
    agent = agent_on(server, handoffs=[expert])
    guard = ab.Guard(router=HeuristicRouter())
    report = ab.report_of(await guard.run(agent, SIMPLE))
    assert [body["model"] for body in server.requests] == ["gpt-4o-mini", "gpt-4.1"]
    assert [call.agent for call in report.calls] == ["assistant", "expert"]


async def test_route_handoffs_applies_the_route_to_every_agent() -> None:
    server = FakeOpenAI(script=[Turn(tool="transfer_to_expert"), Turn(output_tokens=5)])
    expert = Agent(name="expert", model=server.model("responses", "gpt-4.1"))
    agent = agent_on(server, handoffs=[expert])
    config = RunConfig(workflow_name="mine")
    guard = ab.Guard(router=RouterStage(HeuristicRouter(), route_handoffs=True))
    await guard.run(agent, SIMPLE, run_config=config)
    assert [body["model"] for body in server.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert config.model is None  # the user's RunConfig is untouched


async def test_model_settings_overrides_of_a_tier_are_sent() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    cheap = Tier("simple", "gpt-4o-mini", model_settings=ModelSettings(temperature=0.1))
    agent = agent_on(server, model_settings=ModelSettings(top_p=0.5))
    await ab.Guard(router=HeuristicRouter(simple=cheap)).run(agent, SIMPLE)
    body = server.requests[0]
    assert (body["temperature"], body["top_p"]) == (0.1, 0.5)
    assert agent.model_settings.temperature is None


async def test_a_tier_that_cannot_call_tools_is_skipped() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    tiers = [Tier("local", "llama3.1", tools=False), Tier("cloud", "gpt-4o")]
    router = HeuristicRouter(tiers=tiers)
    report = ab.report_of(
        await ab.Guard(router=router).run(agent_on(server, tools=[lookup]), SIMPLE)
    )
    assert [body["model"] for body in server.requests] == ["gpt-4o"]
    assert report.route is not None and report.route.tier == "cloud"
    assert "skipped 'local'" in report.route.reason


async def test_a_request_over_a_tiers_context_window_goes_up() -> None:
    tiers = [Tier("small", "gpt-4o-mini", context_window=50), Tier("big", "gpt-4o")]
    router = HeuristicRouter(tiers=tiers)
    agent = Agent(name="a", model="gpt-4o")
    short = await router.route(RouteRequest(input="Hi", agent=agent))
    long = await router.route(RouteRequest(input="thanks " * 200, agent=agent))
    assert (short.tier, long.tier) == ("small", "big")


def test_streamed_runs_route_synchronously() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    guard = ab.Guard(router=HeuristicRouter())

    async def consume() -> ab.RunReport:
        streamed = guard.run_streamed(agent_on(server), SIMPLE)
        async for _ in streamed.stream_events():
            pass
        return ab.report_of(streamed)

    import asyncio

    report = asyncio.run(consume())
    assert [body["model"] for body in server.requests] == ["gpt-4o-mini"]
    assert report.route is not None and report.route.tier == "simple"


class AsyncOnly:
    """A router that can only decide by awaiting."""

    async def route(self, request: RouteRequest) -> Route:
        return Route(model="gpt-4o-mini", reason="always cheap")


async def test_a_streamed_run_keeps_its_model_when_the_router_has_no_sync_path() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    streamed = ab.Guard(router=AsyncOnly()).run_streamed(agent_on(server), SIMPLE)
    async for _ in streamed.stream_events():
        pass
    report = ab.report_of(streamed)
    assert [body["model"] for body in server.requests] == ["gpt-4o"]
    assert report.route is not None and report.route.model == "gpt-4o"
    assert "no route_sync" in report.route.reason


class Recording:
    def __init__(self) -> None:
        self.requests: list[RouteRequest] = []

    async def route(self, request: RouteRequest) -> Route:
        self.requests.append(request)
        return Route(model="gpt-4o-mini", reason="recorded", tier="cheap")


async def test_the_request_holds_user_team_context_and_a_budget_snapshot() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    budgets = ab.Budgets(
        store="memory://",
        allowances=[
            ab.Allowance(per="user", window="day", tokens=10_000),
            ab.Allowance(per="global", window="day", tokens=1_000_000),
        ],
    )
    router = Recording()
    guard = ab.Guard(router=router, budgets=budgets)
    await guard.run(agent_on(server), SIMPLE, user="u-1", team="t-1", context={"k": 1})
    await guard.run(agent_on(server), SIMPLE, user="u-1", team="t-1")
    first, second = router.requests
    assert (first.user, first.team, first.context, first.text) == ("u-1", "t-1", {"k": 1}, SIMPLE)
    assert first.budget is not None and second.budget is not None
    assert first.budget.remaining("user") == 10_000
    assert second.budget.remaining("user") == 10_000 - 1_005  # the first run's spend
    assert second.budget.used_share("user") == pytest.approx(0.1005)
    assert second.budget.remaining("team") is None


async def test_budget_scope_and_configure_take_a_router() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    async with ab.budget(router=HeuristicRouter(simple="gpt-4o-mini")) as scope:
        await Runner.run(agent_on(server), SIMPLE)
    ab.configure(router=HeuristicRouter(simple="gpt-4.1-nano"))
    async with ab.budget(max_tool_calls=3):
        await Runner.run(agent_on(server), SIMPLE)
    assert [body["model"] for body in server.requests] == ["gpt-4o-mini", "gpt-4.1-nano"]
    assert scope.reports[0].route is not None
    assert scope.reports[0].route.model == "gpt-4o-mini"


async def test_the_ledger_stores_the_route(tmp_path: Any) -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    ledger = ab.SQLiteLedger(str(tmp_path / "spend.db"))
    guard = ab.Guard(router=HeuristicRouter(), sinks=[ledger])
    await guard.run(agent_on(server), SIMPLE)
    assert guard.flush(10)
    (stored,) = ledger.runs()
    assert stored.route is not None
    assert (stored.route.model, stored.route.tier) == ("gpt-4o-mini", "simple")
    assert stored.route.reason.startswith("heuristic score")
    ledger.close()


def test_route_json_round_trip_keeps_names_only() -> None:
    model = FakeOpenAI().model("responses", "gpt-4o")
    route = Route(model=model, reason="r", tier="t", model_settings=ModelSettings(top_p=1))
    data = route.model_dump()
    assert data["model"] == "gpt-4o" and "model_settings" not in data
    assert Route.model_validate_json(route.model_dump_json()).model_name == "gpt-4o"


@pytest.mark.parametrize(
    "make",
    [
        lambda: ab.Guard(router=object()),
        lambda: ab.budget(router="gpt-4o"),
        lambda: HeuristicRouter(tiers=[Tier("a", "m1"), Tier("b", "m2"), Tier("c", "m3")]),
        lambda: HeuristicRouter(thresholds=(2.0, 3.0)),
        lambda: HeuristicRouter(tiers=[Tier("a", "m1"), Tier("a", "m2")]),
        lambda: HeuristicRouter(complex_keywords={"(unclosed": 1.0}),
        lambda: Tier("", "gpt-4o"),
        lambda: Tier("x", ""),
        lambda: Tier("x", "gpt-4o", context_window=0),
        lambda: Route(model=42, reason="x"),
    ],
)
def test_bad_configuration_is_refused_at_construction(make: Any) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        make()


async def test_a_router_returning_something_else_fails_the_run_clearly() -> None:
    class Bad:
        async def route(self, request: RouteRequest) -> Any:
            return "gpt-4o-mini"

    with pytest.raises(ConfigurationError, match=r"must return an agentbudget\.Route"):
        await ab.Guard(router=Bad()).run(agent_on(FakeOpenAI()), SIMPLE)


async def test_a_streamed_run_under_a_wrapper_of_an_async_only_router_keeps_its_model() -> None:
    from agentbudget.routing import BudgetAwareRouter

    server = FakeOpenAI(script=[Turn(output_tokens=5)])
    router = BudgetAwareRouter(AsyncOnly(), tiers=[Tier("cheap", "gpt-4o-mini")])
    streamed = ab.Guard(router=router).run_streamed(agent_on(server), SIMPLE)
    async for _ in streamed.stream_events():
        pass
    report = ab.report_of(streamed)
    assert [body["model"] for body in server.requests] == ["gpt-4o"]
    assert report.route is not None and "no route_sync" in report.route.reason
