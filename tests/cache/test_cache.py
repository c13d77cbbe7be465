"""The response cache through the governed run pipeline (issue 13's acceptance points)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    ModelSettings,
    OutputGuardrailTripwireTriggered,
    RunConfig,
    RunContextWrapper,
    Runner,
    SQLiteSession,
    function_tool,
    output_guardrail,
)
from agents.exceptions import MaxTurnsExceeded
from pydantic import BaseModel

import agentbudget as ab
from agentbudget.testing import NamedScriptedModel, reply, scripted_model, tool_call

QUESTION = "What is the capital of France?"


def answering(*texts: str, model: str = "gpt-4o") -> NamedScriptedModel:
    return scripted_model(model, [reply(t, input_tokens=1_000, output_tokens=100) for t in texts])


def calls(model: Any) -> int:
    return len(model.calls)


class Records:
    def __init__(self) -> None:
        self.reports: list[ab.RunReport] = []

    def record(self, report: ab.RunReport) -> None:
        self.reports.append(report)


# -- acceptance: same user, another user --------------------------------------------------


async def test_same_question_same_user_one_model_call_and_the_second_answer_is_free() -> None:
    model = answering("Paris.", "never sent")
    agent = Agent(name="geo", model=model, instructions="Answer briefly.")
    guard = ab.Guard(cache=ab.ResponseCache())
    first = await guard.run(agent, QUESTION, user="u-1")
    second = await guard.run(agent, QUESTION, user="u-1")
    assert calls(model) == 1
    assert second.final_output == first.final_output == "Paris."
    paid, free = ab.report_of(first), ab.report_of(second)
    assert paid.cache_hit is False and paid.cost_usd is not None and paid.cost_usd > 0
    assert free.cache_hit is True
    assert free.cost_usd == 0 and free.calls == () and free.total_tokens == 0
    assert free.saved_usd == paid.cost_usd
    assert second.to_input_list() == first.to_input_list()
    assert second.last_agent is agent


async def test_same_question_another_user_two_model_calls() -> None:
    model = answering("Paris.", "Paris!")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    first = await guard.run(agent, QUESTION, user="u-1")
    second = await guard.run(agent, QUESTION, user="u-2")
    assert calls(model) == 2
    assert (first.final_output, second.final_output) == ("Paris.", "Paris!")
    assert not ab.report_of(second).cache_hit


async def test_team_scope_shares_within_a_team_and_global_scope_shares_with_everyone() -> None:
    model = answering("a", "b", "c")
    agent = Agent(name="geo", model=model)
    team = ab.Guard(cache=ab.ResponseCache(scope="team"))
    await team.run(agent, QUESTION, user="u-1", team="t-1")
    hit = await team.run(agent, QUESTION, user="u-2", team="t-1")
    await team.run(agent, QUESTION, user="u-1", team="t-2")
    assert calls(model) == 2 and ab.report_of(hit).cache_hit
    everyone = ab.Guard(cache=ab.ResponseCache(scope="global"))
    await everyone.run(agent, QUESTION)
    shared = await everyone.run(agent, QUESTION, user="anyone")
    assert calls(model) == 3 and shared.final_output == "c"


async def test_a_run_without_the_scope_id_is_not_cached_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = answering("a", "b", "c")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        for _ in range(3):
            await guard.run(agent, QUESTION)
    assert calls(model) == 3
    assert caplog.text.count("no user id") == 1


# -- acceptance: everything that changes the answer misses ---------------------------------


@function_tool
def lookup(city: str) -> str:
    """Look a city up."""
    return city


@function_tool
def lookup_v2(city: str, country: str) -> str:
    """Look a city up."""
    return city


class Capital(BaseModel):
    city: str


class Capitals(BaseModel):
    cities: list[str]


BASE: dict[str, Any] = {"name": "geo", "instructions": "Answer briefly."}

CHANGES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "instructions": ({}, {"instructions": "Answer at length."}),
    "model": ({}, {"model_name": "gpt-4o-mini"}),
    "settings": ({}, {"model_settings": ModelSettings(temperature=0.1)}),
    "tools": ({"tools": [lookup]}, {"tools": [lookup_v2]}),
    "output type": ({"output_type": Capital}, {"output_type": Capitals}),
    "agent name": ({}, {"name": "geo2"}),
    "handoffs": ({}, {"handoffs": [Agent(name="other")]}),
}


def build(model: NamedScriptedModel, options: dict[str, Any]) -> Agent[Any]:
    options = dict(options)
    model_name = options.pop("model_name", None)
    if model_name is not None:
        model.model = model_name
    return Agent(model=model, **{**BASE, **options})


@pytest.mark.parametrize("change", list(CHANGES))
async def test_changing_what_shapes_the_answer_misses(change: str) -> None:
    before, after = CHANGES[change]
    answer = '{"city": "Paris"}' if "output_type" in before else "Paris."
    second_answer = '{"cities": ["Paris"]}' if "output_type" in before else "Paris!"
    guard = ab.Guard(cache=ab.ResponseCache())
    first_model = answering(answer)
    await guard.run(build(first_model, before), QUESTION, user="u")
    second_model = answering(second_answer)
    changed = {**before, **after}
    result = await guard.run(build(second_model, changed), QUESTION, user="u")
    assert calls(second_model) == 1, f"changing the {change} must miss"
    assert not ab.report_of(result).cache_hit
    # and the unchanged agent still hits
    third = answering()
    hit = await guard.run(build(third, before), QUESTION, user="u")
    assert calls(third) == 0 and ab.report_of(hit).cache_hit


async def test_run_config_model_and_settings_are_part_of_the_key() -> None:
    model = answering("a", "b")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(agent, QUESTION, user="u")
    await guard.run(
        agent,
        QUESTION,
        user="u",
        run_config=RunConfig(model_settings=ModelSettings(max_tokens=5)),
    )
    other = answering("c", model="gpt-4.1")
    await guard.run(agent, QUESTION, user="u", run_config=RunConfig(model=other))
    assert calls(model) == 2 and calls(other) == 1


async def test_dynamic_instructions_are_evaluated_into_the_key() -> None:
    def instructions(ctx: RunContextWrapper[Any], agent: Agent[Any]) -> str:
        return f"Answer in {ctx.context['lang']}."

    async def async_instructions(ctx: RunContextWrapper[Any], agent: Agent[Any]) -> str:
        return f"Answer in {ctx.context['lang']}."

    for dynamic in (instructions, async_instructions):
        model = answering("Paris.", "París.")
        agent = Agent(name="geo", model=model, instructions=dynamic)
        guard = ab.Guard(cache=ab.ResponseCache())
        await guard.run(agent, QUESTION, user="u", context={"lang": "English"})
        await guard.run(agent, QUESTION, user="u", context={"lang": "Spanish"})
        hit = await guard.run(agent, QUESTION, user="u", context={"lang": "English"})
        assert calls(model) == 2 and hit.final_output == "Paris."


async def test_input_items_are_part_of_the_key() -> None:
    model = answering("a", "b")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    items: list[Any] = [{"role": "user", "content": QUESTION}]
    await guard.run(agent, items, user="u")
    reordered = [{"content": QUESTION, "role": "user"}]  # the same item, keys in another order
    hit = await guard.run(agent, reordered, user="u")
    await guard.run(agent, [*items, {"role": "user", "content": "And Spain?"}], user="u")
    assert calls(model) == 2 and ab.report_of(hit).cache_hit


async def test_a_namespace_bump_invalidates_everything() -> None:
    model = answering("old", "new")
    agent = Agent(name="geo", model=model)
    store = ab.ResponseCache().store
    await ab.Guard(cache=ab.ResponseCache(store, namespace="v1")).run(agent, QUESTION, user="u")
    fresh = await ab.Guard(cache=ab.ResponseCache(store, namespace="v2")).run(
        agent, QUESTION, user="u"
    )
    assert calls(model) == 2 and fresh.final_output == "new"


# -- a hit: output round trip, limits, budgets, sinks ---------------------------------------


async def test_a_pydantic_output_round_trips() -> None:
    model = answering('{"cities": ["Paris", "Lyon"]}')
    agent = Agent(name="geo", model=model, output_type=Capitals)
    guard = ab.Guard(cache=ab.ResponseCache())
    first = await guard.run(agent, QUESTION, user="u")
    second = await guard.run(agent, QUESTION, user="u")
    assert isinstance(second.final_output, Capitals)
    assert second.final_output == first.final_output == Capitals(cities=["Paris", "Lyon"])
    assert calls(model) == 1


async def test_a_hit_counts_against_no_limit_and_no_budget() -> None:
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=1_150)])
    guard = ab.Guard(limits=ab.Limits(max_llm_calls=1), budgets=budgets, cache=ab.ResponseCache())
    model = answering("Paris.")
    agent = Agent(name="geo", model=model)
    async with ab.budget(max_llm_calls=1) as scope:
        await guard.run(agent, QUESTION, user="u")
        for _ in range(3):  # a live run would be refused by the budget and the scope
            hit = await guard.run(agent, QUESTION, user="u")
            assert ab.report_of(hit).cache_hit
    assert scope.llm_calls == 1 and scope.tokens == 1_100
    [row] = await budgets.spend(user="u")
    assert row.spent == 1_100


async def test_sinks_see_hits_with_their_savings(tmp_path: Path) -> None:
    records = Records()
    jsonl = tmp_path / "runs.jsonl"
    guard = ab.Guard(cache=ab.ResponseCache(), sinks=[records, ab.JsonlSink(jsonl)])
    agent = Agent(name="geo", model=answering("Paris."))
    await guard.run(agent, QUESTION, user="u")
    await guard.run(agent, QUESTION, user="u")
    assert await guard.aflush(timeout=10)  # sinks are written off the call path
    paid, hit = records.reports
    assert (paid.cache_hit, hit.cache_hit) == (False, True)
    assert hit.saved_usd == paid.cost_usd and hit.saved_usd > 0
    lines = jsonl.read_text().splitlines()
    assert ab.RunReport.model_validate_json(lines[1]).saved_usd == paid.cost_usd


# -- never cached by default -------------------------------------------------------------


async def test_runs_that_executed_tools_are_not_cached_unless_opted_in() -> None:
    def tool_agent() -> tuple[Agent[Any], NamedScriptedModel]:
        model = scripted_model("gpt-4o", [tool_call("lookup", {"city": "Paris"}), reply("P")] * 2)
        return Agent(name="geo", model=model, tools=[lookup]), model

    agent, model = tool_agent()
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(agent, QUESTION, user="u")
    await guard.run(agent, QUESTION, user="u")
    assert calls(model) == 4  # two live runs of two calls each

    agent, model = tool_agent()
    await guard.run(agent, "opt in per run", user="u", cache_tool_runs=True)
    hit = await guard.run(agent, "opt in per run", user="u")
    assert calls(model) == 2 and ab.report_of(hit).cache_hit and hit.final_output == "P"
    live = await ab.Guard().run(
        Agent(
            name="geo",
            model=scripted_model("gpt-4o", [tool_call("lookup", {"city": "Paris"}), reply("P")]),
            tools=[lookup],
        ),
        "opt in per run",
    )
    assert [i["type"] if "type" in i else i["role"] for i in hit.to_input_list()] == [
        i["type"] if "type" in i else i["role"] for i in live.to_input_list()
    ]
    assert [type(i).__name__ for i in hit.new_items] == [
        "ToolCallItem",
        "ToolCallOutputItem",
        "MessageOutputItem",
    ]

    agent, model = tool_agent()
    opted = ab.Guard(cache=ab.ResponseCache(cache_tool_runs=True))
    await opted.run(agent, QUESTION, user="u")
    await opted.run(agent, QUESTION, user="u")
    assert calls(model) == 2


@pytest.mark.parametrize("stateful", ["previous_response_id", "conversation_id", "session"])
async def test_runs_with_server_or_session_state_are_never_cached(stateful: str) -> None:
    model = answering("a", "b")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    value: Any = SQLiteSession("s-1") if stateful == "session" else "resp-1"
    for _ in range(2):
        await guard.run(agent, QUESTION, user="u", **{stateful: value})
    assert calls(model) == 2


async def test_tripped_errored_and_max_turns_runs_are_not_cached() -> None:
    cache = ab.ResponseCache()
    model = answering("too long", "ok")  # 100 output tokens per reply
    agent = Agent(name="geo", model=model)
    with pytest.raises(ab.TokenLimitExceeded):
        await ab.Guard(limits=ab.Limits(max_output_tokens=50), cache=cache).run(
            agent, QUESTION, user="u"
        )
    after_trip = await ab.Guard(cache=cache).run(agent, QUESTION, user="u")
    assert after_trip.final_output == "ok" and calls(model) == 2

    failing = scripted_model("gpt-4o", [RuntimeError("provider down"), reply("ok")])
    plain = ab.Guard(cache=ab.ResponseCache())
    agent = Agent(name="geo", model=failing)
    with pytest.raises(RuntimeError):
        await plain.run(agent, QUESTION, user="u")
    recovered = await plain.run(agent, QUESTION, user="u")
    assert recovered.final_output == "ok" and not ab.report_of(recovered).cache_hit

    looping = scripted_model("gpt-4o", [tool_call("lookup", {"city": "x"})] * 2)
    agent = Agent(name="geo", model=looping, tools=[lookup])
    tool_guard = ab.Guard(cache=ab.ResponseCache(cache_tool_runs=True))
    for _ in range(2):
        with pytest.raises(MaxTurnsExceeded):
            await tool_guard.run(agent, QUESTION, user="u", max_turns=1)
    assert calls(looping) == 2


async def test_an_answer_that_failed_an_output_guardrail_is_not_cached() -> None:
    @output_guardrail
    async def no_paris(ctx: RunContextWrapper[Any], agent: Agent[Any], output: Any) -> Any:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered="Paris" in output)

    model = answering("Paris.", "Paris.")
    agent = Agent(name="geo", model=model, output_guardrails=[no_paris])
    guard = ab.Guard(cache=ab.ResponseCache())
    for _ in range(2):
        with pytest.raises(OutputGuardrailTripwireTriggered):
            await guard.run(agent, QUESTION, user="u")
    assert calls(model) == 2


async def test_a_run_that_handed_off_is_not_cached() -> None:
    from agentbudget.testing import handoff_call

    expert = Agent(name="expert", model=answering("from the expert", "again"))
    model = scripted_model("gpt-4o", [handoff_call(expert), handoff_call(expert)])
    triage = Agent(name="triage", model=model, handoffs=[expert])
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(triage, QUESTION, user="u")
    second = await guard.run(triage, QUESTION, user="u")
    assert calls(model) == 2 and second.final_output == "again"


# -- per-run switches ----------------------------------------------------------------------


async def test_no_cache_skips_the_read_and_no_store_skips_the_write() -> None:
    model = answering("first", "second", "third")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(agent, "q1", user="u", no_store=True)
    missed = await guard.run(agent, "q1", user="u")  # nothing was stored
    assert missed.final_output == "second"
    fresh = await guard.run(agent, "q1", user="u", no_cache=True)  # read skipped, stored
    assert fresh.final_output == "third" and calls(model) == 3
    hit = await guard.run(agent, "q1", user="u")
    assert hit.final_output == "third" and ab.report_of(hit).cache_hit


def test_the_per_run_keywords_never_reach_the_sdk(close_sdk_loop: None) -> None:
    model = answering("a")
    guard = ab.Guard(cache=ab.ResponseCache())
    result = guard.run_sync(
        Agent(name="geo", model=model), "q", user="u", no_cache=True, no_store=False
    )
    assert result.final_output == "a"
    with pytest.raises(ab.ConfigurationError, match="no_cache"):
        guard.run_sync(Agent(name="geo", model=model), "q", user="u", no_cache="yes")


# -- single flight, nested runs, scopes ------------------------------------------------------


class SlowModel(NamedScriptedModel):
    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await super().get_response(*args, **kwargs)


async def test_concurrent_identical_misses_run_the_agent_once() -> None:
    model = SlowModel("gpt-4o", [reply(f"answer {i}") for i in range(10)])
    agent = Agent(name="geo", model=model)
    records = Records()
    guard = ab.Guard(cache=ab.ResponseCache(), sinks=[records])
    results = await asyncio.gather(*(guard.run(agent, QUESTION, user="u") for _ in range(10)))
    assert calls(model) == 1
    assert {r.final_output for r in results} == {"answer 0"}
    assert await guard.aflush(timeout=10)
    assert sum(r.cache_hit for r in records.reports) == 9


async def test_budget_and_configure_take_a_cache() -> None:
    model = answering("a", "b")
    agent = Agent(name="geo", model=model)
    cache = ab.ResponseCache()
    async with ab.budget(user="u", cache=cache) as scope:
        await Runner.run(agent, QUESTION)
        await Runner.run(agent, QUESTION)
    assert calls(model) == 1 and [r.cache_hit for r in scope.reports] == [False, True]

    ab.configure(cache=ab.ResponseCache())
    model = answering("c", "d")
    agent = Agent(name="geo", model=model)
    async with ab.budget(user="u") as scope:
        await Runner.run(agent, QUESTION)
        await Runner.run(agent, QUESTION)
    assert calls(model) == 1 and scope.reports[1].saved_usd > 0


def test_a_guard_builds_its_policy_with_the_cache_as_the_first_stage() -> None:
    cache = ab.ResponseCache()
    guard = ab.Guard(cache=cache)
    assert guard.policy.stages == (cache,) and guard.cache is cache
    assert ab.Guard().policy.stages == ()
    with pytest.raises(ab.ConfigurationError, match="ResponseCache"):
        ab.Guard(cache="memory://")  # type: ignore[arg-type]
    with pytest.raises(ab.ConfigurationError, match="ResponseCache"):
        ab.budget(cache=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"scope": "tenant"}, "scope"),
        ({"namespace": 3}, "namespace"),
        ({"cache_tool_runs": "yes"}, "cache_tool_runs"),
        ({"maxsize": 0}, "maxsize"),
        ({"store": "memcached://x"}, "known schemes: memory, redis, rediss, sqlite"),
        ({"store": "nowhere"}, "cache store URL"),
        ({"store": "sqlite:///no/such/dir/c.db"}, "existing directory"),
        ({"store": object()}, "CacheStore"),
    ],
)
def test_bad_configuration_is_a_configuration_error(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ab.ConfigurationError, match=match):
        ab.ResponseCache(**options)


async def test_a_replayed_result_is_a_copy_not_the_stored_object() -> None:
    model = answering("Paris.")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(agent, QUESTION, user="u")
    one = await guard.run(agent, QUESTION, user="u")
    two = await guard.run(agent, QUESTION, user="u")
    assert one is not two and one.new_items[0] is not two.new_items[0]
    assert dataclasses.is_dataclass(one) and one.final_output == two.final_output
    assert ab.report_of(one).run_id != ab.report_of(two).run_id
    assert ab.report_of(two).saved_usd == Decimal("0.003500000")  # gpt-4o: 1000 in, 100 out


async def test_reports_of_hits_and_live_runs_are_complete_and_round_trip_json() -> None:
    guard = ab.Guard(cache=ab.ResponseCache())
    agent = Agent(name="geo", model=answering("Paris."))
    live = ab.report_of(await guard.run(agent, QUESTION, user="u"))
    hit = ab.report_of(await guard.run(agent, QUESTION, user="u"))
    for report in (live, hit):
        assert report.model_fields_set == set(ab.RunReport.model_fields)
        assert ab.RunReport.model_validate_json(report.model_dump_json()) == report
        with pytest.raises(ValueError, match="frozen"):
            report.user = "someone else"  # type: ignore[misc]
    assert ab.RunReport.model_validate_json(hit.model_dump_json()).saved_usd == live.cost_usd
