"""The routers beyond the heuristic: budget-aware, fallback, local models, classifier."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx2 as httpx
import pytest
from agents import Agent, ModelSettings, function_tool
from helpers.fake_openai import FakeOpenAI, Turn

import agentbudget as ab
from agentbudget.budgets import WindowSpend
from agentbudget.errors import ConfigurationError
from agentbudget.routing import (
    BudgetAwareRouter,
    BudgetSnapshot,
    ClassifierRouter,
    FallbackRouter,
    HeuristicRouter,
    RouteRequest,
    Tier,
    local_model,
)

SIMPLE = "How do I reset my password?"
COMPLEX = "Why does this deadlock sometimes, and how would you redesign the locking?"
TIERS = [Tier("local", "llama3.1"), Tier("simple", "gpt-4o-mini"), Tier("complex", "gpt-4o")]


@function_tool
def lookup(query: str) -> str:
    """Look something up."""
    return "found"


@dataclass
class FailingOpenAI(FakeOpenAI):
    """The fake OpenAI server, answering requests for ``failing`` models with an error."""

    failing: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        if body.get("model") in self.failing:
            self.failed.append(body["model"])
            status, error = self.failing[body["model"]]
            return httpx.Response(status, json={"error": error})
        return await super()._handle(request)


RATE_LIMITED = (429, {"message": "Rate limit reached", "type": "requests", "code": None})
TOO_LONG = (
    400,
    {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
    },
)
BAD_REQUEST = (400, {"message": "Invalid value for 'temperature'", "type": "invalid_request_error"})


def snapshot(user_share: float) -> BudgetSnapshot:
    allowance = ab.Allowance(per="user", window="day", tokens=1_000)
    spent = int(user_share * 1_000)
    return BudgetSnapshot((WindowSpend(allowance, "u", "2026-12-02", "tokens", 1_000, spent, 0),))


# -- BudgetAwareRouter ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "share", "tier"),
    [
        (COMPLEX, None, "complex"),
        (COMPLEX, 0.5, "complex"),
        (COMPLEX, 0.85, "simple"),  # past the soft share: one tier down
        (SIMPLE, 0.85, "local"),
        (COMPLEX, 1.0, "local"),  # the hard limit: the cheapest tier
        (SIMPLE, 0.5, "simple"),
    ],
)
async def test_budget_aware_router_drops_tiers_as_the_allowance_runs_low(
    text: str, share: float | None, tier: str
) -> None:
    inner = HeuristicRouter(tiers=TIERS, thresholds=(-100.0, 1.0))
    router = BudgetAwareRouter(inner, soft=0.8)
    budget = snapshot(share) if share is not None else None
    route = await router.route(RouteRequest(input=text, agent=Agent(name="a"), budget=budget))
    assert route.tier == tier
    if share is not None and share >= 0.8:
        assert "allowance" in route.reason


async def test_a_dropped_tier_must_still_fit_the_agent() -> None:
    tiers = [Tier("local", "llama3.1", tools=False), Tier("simple", "gpt-4o-mini")]
    router = BudgetAwareRouter(HeuristicRouter(tiers=tiers))
    agent = Agent(name="a", tools=[lookup])
    route = await router.route(RouteRequest(input=COMPLEX, agent=agent, budget=snapshot(1.0)))
    assert route.tier == "simple" and "skipped 'local'" in route.reason


async def test_no_double_downgrade_when_the_router_already_chose_a_cheaper_model() -> None:
    """The router sent the run to gpt-4.1-nano; when the call does not fit the allowance,
    the chain's Downgrade("gpt-4o-mini") would be an upgrade: it is skipped for the next
    step (CapOutput), so the call stays on nano, capped."""
    server = FakeOpenAI(script=[Turn(output_tokens=50)])
    budgets = ab.Budgets(
        store="memory://",
        allowances=[ab.Allowance(per="user", window="day", usd="0.0005")],
        on_exhausted=[ab.Downgrade("gpt-4o-mini"), ab.CapOutput(100)],
        min_output_tokens=5_000,  # no lowering of the bound: the chain applies
    )
    router = BudgetAwareRouter(
        HeuristicRouter(tiers=[Tier("nano", "gpt-4.1-nano"), Tier("complex", "gpt-4o")])
    )
    agent = Agent(
        name="a",
        model=server.model("responses", "gpt-4o"),
        model_settings=ModelSettings(max_tokens=2_000),
    )
    report = ab.report_of(
        await ab.Guard(router=router, budgets=budgets).run(agent, SIMPLE, user="u")
    )
    assert [(c.model, c.degraded) for c in report.calls] == [("gpt-4.1-nano", "cap_output")]
    assert [body["model"] for body in server.requests] == ["gpt-4.1-nano"]


class Untiered:
    async def route(self, request: RouteRequest) -> ab.Route:
        return ab.Route(model="gpt-4o", reason="always")


def test_budget_aware_router_validates() -> None:
    with pytest.raises(ConfigurationError, match="soft"):
        BudgetAwareRouter(HeuristicRouter(), soft=1.5)
    with pytest.raises(ConfigurationError, match="per"):
        BudgetAwareRouter(HeuristicRouter(), per="org")
    with pytest.raises(ConfigurationError, match="no tiers"):
        BudgetAwareRouter(Untiered())


# -- FallbackRouter ------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "why"), [(RATE_LIMITED, "rate limited"), (TOO_LONG, "context")])
async def test_fallback_moves_once_and_the_rest_of_the_run_stays_there(
    error: tuple[int, dict[str, Any]], why: str
) -> None:
    server = FailingOpenAI(
        script=[Turn(tool="lookup", arguments='{"query": "x"}'), Turn(output_tokens=7)],
        failing={"gpt-4o": error},
    )
    agent = Agent(name="a", model=server.model("responses", "gpt-4o"), tools=[lookup])
    guard = ab.Guard(router=FallbackRouter(["gpt-4o", "gpt-4o-mini"]))
    report = ab.report_of(await guard.run(agent, SIMPLE))
    assert server.failed == ["gpt-4o"]
    assert [body["model"] for body in server.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert report.route is not None and report.route.model == "gpt-4o"
    assert report.route.fallback is not None
    assert report.route.fallback.startswith("gpt-4o-mini after") and why in report.route.fallback
    # the failed call is a line of the report (charged at its estimate), then the new model
    assert [(c.model, c.estimated, c.degraded) for c in report.calls] == [
        ("gpt-4o", True, None),
        ("gpt-4o-mini", False, "fallback"),
        ("gpt-4o-mini", False, "fallback"),
    ]


async def test_fallback_happens_once_per_run() -> None:
    server = FailingOpenAI(failing={"gpt-4o": RATE_LIMITED, "gpt-4o-mini": RATE_LIMITED})
    agent = Agent(name="a", model=server.model("responses", "gpt-4o"))
    with pytest.raises(Exception, match="Rate limit") as caught:
        await ab.Guard(router=FallbackRouter(["gpt-4o", "gpt-4o-mini", "gpt-4.1"])).run(
            agent, SIMPLE
        )
    assert server.failed == ["gpt-4o", "gpt-4o-mini"]
    assert type(caught.value).__name__ == "RateLimitError"


async def test_other_errors_do_not_fall_back() -> None:
    server = FailingOpenAI(failing={"gpt-4o": BAD_REQUEST})
    agent = Agent(name="a", model=server.model("responses", "gpt-4o"))
    with pytest.raises(Exception, match="temperature"):
        await ab.Guard(router=FallbackRouter(["gpt-4o", "gpt-4o-mini"])).run(agent, SIMPLE)
    assert server.failed == ["gpt-4o"] and server.requests == []


async def test_a_stream_falls_back_when_it_fails_before_its_first_event() -> None:
    server = FailingOpenAI(script=[Turn(output_tokens=9)], failing={"gpt-4o": RATE_LIMITED})
    agent = Agent(name="a", model=server.model("responses", "gpt-4o"))
    streamed = ab.Guard(router=FallbackRouter(["gpt-4o", "gpt-4o-mini"])).run_streamed(
        agent, SIMPLE
    )
    async for _ in streamed.stream_events():
        pass
    report = ab.report_of(streamed)
    assert [body["model"] for body in server.requests] == ["gpt-4o-mini"]
    assert report.route is not None and report.route.fallback is not None
    assert report.calls[-1].model == "gpt-4o-mini" and report.calls[-1].output_tokens == 9


async def test_fallback_after_another_routers_choice() -> None:
    server = FailingOpenAI(script=[Turn(output_tokens=3)], failing={"gpt-4o-mini": RATE_LIMITED})
    agent = Agent(name="a", model=server.model("responses", "gpt-4o"))
    router = FallbackRouter(["gpt-4.1"], inner=HeuristicRouter())
    report = ab.report_of(await ab.Guard(router=router).run(agent, SIMPLE))
    assert server.failed == ["gpt-4o-mini"]
    assert [body["model"] for body in server.requests] == ["gpt-4.1"]
    assert report.route is not None and report.route.tier == "simple"


def test_fallback_router_validates() -> None:
    with pytest.raises(ConfigurationError):
        FallbackRouter(["gpt-4o"])
    with pytest.raises(ConfigurationError):
        FallbackRouter("gpt-4o")  # type: ignore[arg-type]


# -- local models --------------------------------------------------------------------------


async def test_a_local_model_costs_nothing_and_is_marked_local() -> None:
    """An Ollama-style OpenAI-compatible Chat Completions server (the fake's chat endpoint)."""
    server = FakeOpenAI(script=[Turn(output_tokens=12)])
    local = local_model("llama3.1", openai_client=server.client())
    cloud = FakeOpenAI(script=[Turn(output_tokens=12)])
    agent = Agent(
        name="a",
        model=cloud.model("responses", "gpt-4o"),
        model_settings=ModelSettings(include_usage=True),
    )
    guard = ab.Guard(router=HeuristicRouter(simple=local, complex="gpt-4o"))
    report = ab.report_of(await guard.run(agent, SIMPLE))
    assert [body["model"] for body in server.requests] == ["llama3.1"]
    assert "messages" in server.requests[0]  # Chat Completions, not Responses
    assert cloud.requests == []
    (call,) = report.calls
    assert (call.model, call.local, call.cost_usd) == ("llama3.1", True, Decimal(0))
    assert call.output_tokens == 12
    # the complex request goes to the cloud model, priced
    report = ab.report_of(await guard.run(agent, COMPLEX))
    assert report.calls[0].model == "gpt-4o" and report.calls[0].cost_usd
    assert not report.calls[0].local


def test_local_model_defaults_to_ollama_and_declares_capabilities() -> None:
    model = local_model("qwen2.5", tools=False, context_window=8_192)
    assert str(model._client.base_url) == "http://localhost:11434/v1/"
    tier = Tier.of("local", model)
    assert (tier.tools, tier.structured_output, tier.context_window) == (False, True, 8_192)
    with pytest.raises(ConfigurationError):
        local_model("x", base_url="localhost:11434")
    with pytest.raises(ConfigurationError):
        local_model("")


# -- ClassifierRouter ----------------------------------------------------------------------


def classifier_on(server: FakeOpenAI, name: str = "gpt-4o-mini") -> Agent[Any]:
    return Agent(name="route-classifier", model=server.model("responses", name))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Labelling(FakeOpenAI):
    """The fake server, answering the classifier with a fixed label."""

    label: str = "simple"

    def _responses(self, body: dict[str, Any]) -> httpx.Response:
        response = super()._responses(body)
        if body.get("model") != "classifier-model":
            return response
        data = json.loads(response.content)
        data["output"][0]["content"][0]["text"] = self.label
        return httpx.Response(200, json=data)


async def test_classifier_cost_is_a_line_of_the_report_and_counts_in_budgets() -> None:
    server = Labelling(script=[Turn(output_tokens=1), Turn(output_tokens=20)], label="simple")
    budgets = ab.Budgets(
        store="memory://", allowances=[ab.Allowance(per="user", window="day", tokens=100_000)]
    )
    router = ClassifierRouter(classifier_on(server, "classifier-model"), simple="gpt-4o-mini")
    guard = ab.Guard(
        router=router,
        budgets=budgets,
        prices=ab.PriceTable.default().with_aliases({"classifier-model": "gpt-4o-mini"}),
    )
    agent = Agent(name="assistant", model=server.model("responses", "gpt-4o"))
    report = ab.report_of(await guard.run(agent, SIMPLE, user="u-1"))
    assert [body["model"] for body in server.requests] == ["classifier-model", "gpt-4o-mini"]
    assert [c.agent for c in report.calls] == ["route-classifier", "assistant"]
    assert report.route is not None and report.route.tier == "simple"
    assert report.route.classifier_cost_usd == report.calls[0].cost_usd > 0
    (spend,) = await budgets.spend(user="u-1")
    assert spend.spent == report.total_tokens == 2 * 1_000 + 1 + 20


async def test_classifier_labels_are_cached_per_normalised_input_with_a_ttl() -> None:
    server = Labelling(script=[Turn(output_tokens=1)], label="complex")
    clock = Clock()
    router = ClassifierRouter(classifier_on(server, "classifier-model"), ttl=60, timer=clock)
    agent = Agent(name="a")
    first = await router.route(RouteRequest(input="Is   this HARD?", agent=agent))
    again = await router.route(RouteRequest(input="is this hard?", agent=agent))
    assert (first.tier, again.tier) == ("complex", "complex")
    assert "cached" in again.reason and len(server.requests) == 1
    clock.now = 61
    await router.route(RouteRequest(input="is this hard?", agent=agent))
    assert len(server.requests) == 2


async def test_classifier_failure_or_nonsense_goes_to_the_strong_tier() -> None:
    broken = FailingOpenAI(failing={"gpt-4o-mini": BAD_REQUEST})
    router = ClassifierRouter(classifier_on(broken))
    route = await router.route(RouteRequest(input=SIMPLE, agent=Agent(name="a")))
    assert route.tier == "complex" and "classifier failed" in route.reason
    chatty = Labelling(label="maybe simple, maybe complex")
    router = ClassifierRouter(classifier_on(chatty, "classifier-model"))
    route = await router.route(RouteRequest(input=SIMPLE, agent=Agent(name="a")))
    assert route.tier == "complex" and "strong tier" in route.reason


async def test_a_streamed_run_uses_a_cached_label_or_the_strong_tier() -> None:
    server = Labelling(label="simple")
    router = ClassifierRouter(classifier_on(server, "classifier-model"))
    agent = Agent(name="a")
    assert router.route_sync(RouteRequest(input=SIMPLE, agent=agent)).tier == "complex"
    await router.route(RouteRequest(input=SIMPLE, agent=agent))
    assert router.route_sync(RouteRequest(input=SIMPLE, agent=agent)).tier == "simple"


def test_classifier_router_validates() -> None:
    with pytest.raises(ConfigurationError):
        ClassifierRouter(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ClassifierRouter(ttl=-1)


class Collect:
    def __init__(self) -> None:
        self.reports: list[ab.RunReport] = []

    def record(self, report: ab.RunReport) -> None:
        self.reports.append(report)


async def test_a_classifier_that_trips_a_limit_ends_the_run_with_its_report() -> None:
    server = Labelling(script=[Turn(output_tokens=1)], label="simple")
    sink = Collect()
    guard = ab.Guard(
        router=ClassifierRouter(classifier_on(server, "classifier-model")),
        limits=ab.Limits(max_tokens=500),  # the classifier's 1,000 input tokens cross it
        prices=ab.PriceTable.default().with_aliases({"classifier-model": "gpt-4o-mini"}),
        sinks=[sink],
    )
    agent = Agent(name="assistant", model=server.model("responses", "gpt-4o"))
    with pytest.raises(ab.TokenLimitExceeded) as caught:
        await guard.run(agent, SIMPLE)
    assert guard.flush(10)
    (report,) = sink.reports
    assert caught.value.report is report
    assert (report.agent, report.outcome, report.route) == ("assistant", "tripped", None)


async def test_budget_aware_routing_through_a_guard_uses_the_users_spend() -> None:
    server = FakeOpenAI(script=[Turn(output_tokens=100)], input_tokens=8_400)
    budgets = ab.Budgets(
        store="memory://", allowances=[ab.Allowance(per="user", window="day", tokens=10_000)]
    )
    guard = ab.Guard(router=BudgetAwareRouter(HeuristicRouter(), soft=0.8), budgets=budgets)
    agent = Agent(name="a", model=server.model("responses", "gpt-4o"))
    first = ab.report_of(await guard.run(agent, COMPLEX, user="u-1"))
    server.input_tokens = 100
    second = ab.report_of(await guard.run(agent, COMPLEX, user="u-1"))
    other = ab.report_of(await guard.run(agent, COMPLEX, user="u-2"))
    assert first.route is not None and first.route.tier == "complex"
    assert second.route is not None and second.route.tier == "simple"  # 85% used
    assert "85% used" in second.route.reason
    assert other.route is not None and other.route.tier == "complex"  # per user
    assert [body["model"] for body in server.requests] == ["gpt-4o", "gpt-4o-mini", "gpt-4o"]
