"""Budgets: reserve, then settle; windows; the degrade chain; fail modes."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, ModelSettings, Runner
from agents.testing import ModelStep
from helpers.billing import QUESTION, agent, billed, est
from helpers.stores_support import (
    Env,
    FakeClock,
    RedisServer,
    free_port,
    require_redis_server_binary,
)

import agentbudget as ab
from agentbudget.budgets import counter_key, parse_allowance
from agentbudget.testing import reply, scripted_model


def budgets(env: Env, *allowances: ab.Allowance, **kwargs: Any) -> ab.Budgets:
    return ab.Budgets(store=env.make(), allowances=allowances, **kwargs)


async def test_reserve_then_settle_records_the_actual_usage(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="user", window="day", tokens=10_000))
    result = await ab.Guard(budgets=b).run(agent(output_tokens=40), QUESTION, user="u-1")
    (row,) = await b.spend(user="u-1")
    assert row.spent == ab.report_of(result).total_tokens == est() + 40
    assert row.reserved == 0 and row.remaining == 10_000 - row.spent


async def test_allowance_admits_runs_until_spent_then_refuses(env: Env) -> None:
    per_run = est() + 100  # the model uses its whole bound: worst case == actual
    b = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=per_run * 3 + 10),
        on_exhausted=[ab.Refuse("Daily limit reached")],
    )
    guard = ab.Guard(budgets=b)
    for _ in range(3):
        await guard.run(agent(), QUESTION, user="u-1")
    refused = agent()
    with pytest.raises(ab.BudgetExhausted) as info:
        await guard.run(refused, QUESTION, user="u-1")
    assert refused.model.calls == ()  # type: ignore[union-attr]
    exc = info.value
    assert exc.refusal == "Daily limit reached" and str(exc).startswith("Daily limit reached")
    assert exc.allowance.per == "user" and exc.limit == "allowance:user/day:tokens"
    assert exc.report is not None and exc.report.outcome == "refused"
    # other users are not affected
    await guard.run(agent(), QUESTION, user="u-2")
    (row,) = await b.spend(user="u-1")
    assert row.spent == per_run * 3


async def test_downgrade_sends_the_call_to_the_cheaper_model(env: Env) -> None:
    # $0.0005 fits a gpt-4o-mini call (~$0.00006) but not a gpt-4o one (~$0.001)
    cheap = scripted_model(
        "gpt-4o-mini", [ModelStep.respond(billed("gpt-4o-mini", output_tokens=80))]
    )
    pricey = agent(bound=100)
    b = budgets(
        env,
        ab.Allowance(per="user", window="day", usd="0.0005"),
        on_exhausted=[ab.Downgrade(cheap), ab.Refuse("no")],
        min_output_tokens=100,  # no room for the whole answer: downgrade, don't cut it
    )
    result = await ab.Guard(budgets=b).run(pricey, QUESTION, user="u-1")
    report = ab.report_of(result)
    assert pricey.model.calls == ()  # type: ignore[union-attr]
    assert len(cheap.calls) == 1
    assert [(c.model, c.degraded) for c in report.calls] == [("gpt-4o-mini", "downgrade")]
    assert pricey.model_settings.max_tokens == 100  # the user's agent is untouched
    # without the Downgrade step the same call is refused
    b2 = budgets(
        env,
        ab.Allowance(per="user", window="day", usd="0.0005"),
        on_exhausted=[ab.Refuse("no")],
        min_output_tokens=100,
    )
    with pytest.raises(ab.BudgetExhausted):
        await ab.Guard(budgets=b2).run(agent(bound=100), QUESTION, user="u-9")


async def test_downgrade_by_model_name_uses_the_run_provider(env: Env) -> None:
    from agents import RunConfig
    from agents.models.interface import Model, ModelProvider

    cheap = scripted_model(
        "gpt-4o-mini", [ModelStep.respond(billed("gpt-4o-mini", output_tokens=10))]
    )
    asked: list[str | None] = []

    class Provider(ModelProvider):
        def get_model(self, model_name: str | None) -> Model:
            asked.append(model_name)
            return cheap if model_name == "gpt-4o-mini" else scripted_model("gpt-4o")

    b = budgets(
        env,
        ab.Allowance(per="global", window="day", usd="0.0005"),
        on_exhausted=[ab.Downgrade("gpt-4o-mini")],
        min_output_tokens=100,
    )
    named = Agent(name="support", model="gpt-4o", model_settings=ModelSettings(max_tokens=100))
    result = await ab.Guard(budgets=b).run(
        named, QUESTION, run_config=RunConfig(model_provider=Provider())
    )
    assert asked == ["gpt-4o", "gpt-4o-mini"]
    assert ab.report_of(result).calls[0].model == "gpt-4o-mini" and len(cheap.calls) == 1


def _chat_completions_client(seen: list[str]) -> Any:
    """An ``AsyncOpenAI`` client whose Chat Completions endpoint is an in-process fake."""
    import json

    import httpx2 as httpx
    from openai import AsyncOpenAI

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(f"{request.url.host} {body['model']}")
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
            },
        )

    return AsyncOpenAI(
        api_key="sk-test",
        base_url="https://llm.internal.example/v1",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        max_retries=0,
    )


async def test_downgrade_by_name_keeps_the_client_of_the_agents_own_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agents import OpenAIChatCompletionsModel

    # No default provider is usable: a replacement built by it would fail to send.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seen: list[str] = []
    own = OpenAIChatCompletionsModel("gpt-4o", _chat_completions_client(seen))
    pricey = Agent(name="support", model=own, model_settings=ModelSettings(max_tokens=100))
    b = ab.Budgets(
        store="memory://",
        allowances=[ab.Allowance(per="user", window="day", usd="0.0005")],
        on_exhausted=[ab.Downgrade("gpt-4o-mini")],
        min_output_tokens=100,  # downgrade rather than cut the answer
    )
    result = await ab.Guard(budgets=b).run(pricey, QUESTION, user="u-1")
    assert seen == ["llm.internal.example gpt-4o-mini"]
    assert [(c.model, c.degraded) for c in ab.report_of(result).calls] == [
        ("gpt-4o-mini", "downgrade")
    ]
    assert pricey.model is own and own.model == "gpt-4o"  # the user's model is untouched


def test_sibling_model_keeps_class_and_client() -> None:
    from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
    from agents.models.openai_responses import OpenAIResponsesWSModel

    from agentbudget.resolution import sibling_model

    client = _chat_completions_client([])
    for cls in (OpenAIResponsesModel, OpenAIResponsesWSModel, OpenAIChatCompletionsModel):
        built = sibling_model(cls("gpt-4o", client), "gpt-4o-mini")
        assert type(built) is cls and built.model == "gpt-4o-mini"
        assert built._client is client  # type: ignore[attr-defined]

    class Opaque:  # no ``model`` attribute to change
        pass

    with pytest.raises(ab.ConfigurationError, match="give Downgrade a Model instance"):
        sibling_model(Opaque(), "gpt-4o-mini")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [42, None, "", "  ", b"gpt-4o"])
def test_downgrade_rejects_what_is_not_a_model_at_construction(bad: Any) -> None:
    with pytest.raises(ab.ConfigurationError, match="Downgrade"):
        ab.Downgrade(bad)


async def test_cap_output_shrinks_the_bound_until_it_fits(env: Env) -> None:
    room = est() + 60  # room for the input and 60 output tokens
    model_agent = agent(output_tokens=500, bound=None)  # would ask for 16,384 output tokens
    b = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=room),
        on_exhausted=[ab.CapOutput(32), ab.Refuse("no")],
        min_output_tokens=64,  # 60 tokens of room is below the floor: the chain decides
    )
    result = await ab.Guard(budgets=b).run(model_agent, QUESTION, user="u-1")
    sent = model_agent.model.calls[0]  # type: ignore[union-attr]
    assert sent.model_settings.max_tokens == 60
    report = ab.report_of(result)
    assert report.calls[0].degraded == "cap_output" and report.output_tokens == 60
    (row,) = await b.spend(user="u-1")
    assert row.spent == room and row.reserved == 0
    # below the floor the step is skipped and the chain refuses
    b2 = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=est() + 20),
        on_exhausted=[ab.CapOutput(32), ab.Refuse("no")],
        min_output_tokens=64,
    )
    with pytest.raises(ab.BudgetExhausted):
        await ab.Guard(budgets=b2).run(agent(bound=None), QUESTION, user="u-1")
    # and without CapOutput, the same room refuses
    b3 = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=room),
        on_exhausted=[ab.Refuse("no")],
        min_output_tokens=64,
    )
    with pytest.raises(ab.BudgetExhausted):
        await ab.Guard(budgets=b3).run(agent(bound=None), QUESTION, user="u-1")


async def test_no_chain_still_refuses_with_budget_exhausted(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="team", window="hour", tokens=5))
    with pytest.raises(ab.BudgetExhausted) as info:
        await ab.Guard(budgets=b).run(agent(), QUESTION, team="t-1")
    assert info.value.refusal is None and "team/hour" in str(info.value)


async def test_user_team_and_global_allowances_apply_together(env: Env) -> None:
    per_run = est() + 100
    b = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=per_run * 10),
        ab.Allowance(per="team", window="day", tokens=per_run * 10),
        ab.Allowance(per="global", window="month", tokens=per_run * 2),
    )
    guard = ab.Guard(budgets=b)
    await guard.run(agent(), QUESTION, user="a", team="t")
    await guard.run(agent(), QUESTION, user="b", team="t")
    with pytest.raises(ab.BudgetExhausted) as info:
        await guard.run(agent(), QUESTION, user="c", team="u")
    assert info.value.allowance.per == "global"
    rows = await b.spend(user="a", team="t")
    assert [(r.allowance.per, r.spent) for r in rows] == [
        ("user", per_run),
        ("team", per_run * 2),
        ("global", per_run * 2),
    ]


async def test_missing_user_for_a_user_allowance_is_a_clear_error(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="user", window="day", tokens=1_000))
    model_agent = agent()
    with pytest.raises(ab.ConfigurationError, match=r"user=\.\.\."):
        await ab.Guard(budgets=b).run(model_agent, QUESTION)
    assert model_agent.model.calls == ()  # type: ignore[union-attr]


async def test_ids_of_any_content_never_collide(env: Env) -> None:
    per_run = est() + 100
    b = budgets(env, ab.Allowance(per="user", window="total", tokens=per_run))
    guard = ab.Guard(budgets=b)
    ids = ["a:b", "a", "a:b|total", "ü/ñ{x}", "x" * 10_000, "a|1:a"]
    for user in ids:
        await guard.run(agent(), QUESTION, user=user)  # each has its own full allowance
    for user in ids:
        (row,) = await b.spend(user=user)
        assert row.spent == per_run
    with pytest.raises(ab.ConfigurationError):
        await guard.run(agent(), QUESTION, user="")
    keys = {counter_key(b.allowances[0], i, "total", "tokens") for i in ids}
    assert len(keys) == len(ids)


async def test_usd_allowance_settles_exact_nano_dollars(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="user", window="day", usd="1"))
    result = await ab.Guard(budgets=b).run(agent(output_tokens=33), QUESTION, user="u")
    (row,) = await b.spend(user="u")
    assert Decimal(row.spent) / 10**9 == ab.report_of(result).cost_usd


async def test_unpriced_model_with_dollar_allowance_fails_before_any_call(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="global", window="day", usd="1"))
    model = scripted_model("my-llm", [reply("x")])
    with pytest.raises(ab.UnknownModelError):
        await ab.Guard(budgets=b).run(Agent(name="a", model=model), QUESTION)
    assert model.calls == ()


async def test_failed_call_settles_at_least_the_input(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="user", window="day", tokens=10_000))
    broken = Agent(
        name="a",
        model=scripted_model("gpt-4o", [RuntimeError("provider down")]),
        model_settings=ModelSettings(max_tokens=100),
    )
    with pytest.raises(RuntimeError):
        await ab.Guard(budgets=b).run(broken, QUESTION, user="u")
    (row,) = await b.spend(user="u")
    assert row.spent == est() and row.reserved == 0


async def test_soft_threshold_alerts_once_per_window(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    per_run = est() + 100
    alerts: list[ab.BudgetAlert] = []
    b = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=per_run * 4, soft=0.5),
        on_alert=alerts.append,
    )
    guard = ab.Guard(budgets=b)
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        for _ in range(4):
            await guard.run(agent(), QUESTION, user="u")
            await b.drain()
    assert len(alerts) == 1 and alerts[0].spent == per_run * 2
    assert "budget alert" in caplog.text and "50%" in str(alerts[0])


async def test_calendar_windows_roll_over_in_the_configured_time_zone() -> None:
    clock = FakeClock(1_767_225_600.0 - 60)  # 2025-12-31T23:59:00Z
    b = ab.Budgets(
        store="memory://",
        clock=clock,
        allowances=[
            ab.Allowance(per="user", window="day", tokens=1_000_000),
            ab.Allowance(per="user", window="month", tokens=1_000_000),
            ab.Allowance(per="user", window=3600, tokens=1_000_000),
        ],
    )
    guard = ab.Guard(budgets=b)
    await guard.run(agent(), QUESTION, user="u")
    before = [(r.window, r.spent) for r in await b.spend(user="u")]
    assert [w for w, _ in before] == ["2025-12-31", "2025-12", "3600s@1767222000"]
    clock.advance(120)  # past midnight UTC: a new day, month and hour
    assert [r.spent for r in await b.spend(user="u")] == [0, 0, 0]
    tokyo = ab.Budgets(
        store="memory://",
        clock=clock,
        tz="Asia/Tokyo",
        allowances=[ab.Allowance(per="user", window="day", tokens=10)],
    )
    assert [r.window for r in await tokyo.spend(user="u")] == ["2026-01-01"]


def test_invalid_policies_are_rejected() -> None:
    with pytest.raises(ab.ConfigurationError):
        ab.Allowance(per="org", window="day", tokens=1)  # type: ignore[arg-type]
    with pytest.raises(ab.ConfigurationError):
        ab.Allowance(per="user", window="week", tokens=1)  # type: ignore[arg-type]
    with pytest.raises(ab.ConfigurationError):
        ab.Allowance(per="user", window="day")
    with pytest.raises(ab.ConfigurationError):
        ab.Allowance(per="user", window="day", usd=0.5)  # type: ignore[arg-type]
    with pytest.raises(ab.ConfigurationError):
        ab.Budgets(allowances=[])
    with pytest.raises(ab.ConfigurationError, match="journal"):
        ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=1)], fail="open")
    with pytest.raises(ab.ConfigurationError, match="known"):
        ab.Budgets(
            store="postgres://x", allowances=[ab.Allowance(per="user", window="day", tokens=1)]
        )
    with pytest.raises(ab.ConfigurationError, match="time zone"):
        ab.Budgets(tz="Mars/Olympus", allowances=[ab.Allowance(per="user", window="day", tokens=1)])
    assert parse_allowance("global:month:usd=100").usd == Decimal("100")
    assert parse_allowance("user:3600:tokens=5").window == 3600


async def test_budget_scope_and_configure_use_the_default_guards_budgets(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="user", window="day", tokens=5))
    ab.configure(budgets=b)
    with pytest.raises(ab.BudgetExhausted):
        async with ab.budget(user="u-5"):
            await Runner.run(agent(), QUESTION)


async def test_fail_closed_raises_before_any_call(tmp_path: Path) -> None:
    b = ab.Budgets(
        store=f"redis://127.0.0.1:{free_port()}/0",
        allowances=[ab.Allowance(per="user", window="day", tokens=1_000)],
    )
    model_agent = agent()
    with pytest.raises(ab.StoreUnavailable):
        await ab.Guard(budgets=b).run(model_agent, QUESTION, user="u")
    assert model_agent.model.calls == ()  # type: ignore[union-attr]


@pytest.mark.redis
@pytest.mark.slow
async def test_fail_open_runs_journals_and_replays_with_nothing_lost(tmp_path: Path) -> None:
    server = RedisServer(require_redis_server_binary(), free_port())
    server.start()
    journal = tmp_path / "journal.jsonl"
    b = ab.Budgets(
        store=server.url,
        fail="open",
        journal=journal,
        allowances=[ab.Allowance(per="user", window="day", tokens=100_000)],
    )
    guard = ab.Guard(budgets=b)
    try:
        await guard.run(agent(output_tokens=10), QUESTION, user="u")
        server.stop()
        outage = [
            await guard.run(agent(output_tokens=20), QUESTION, user="u") for _ in range(3)
        ]  # the store is down: the runs go on
        assert journal.exists() and journal.read_text().count("\n") == 3
        server.start()  # an empty server again: only the journal remembers
        await b.store.replay()  # type: ignore[attr-defined]
        (row,) = await b.spend(user="u")
        assert row.spent == sum(ab.report_of(r).total_tokens for r in outage)
        assert journal.read_text() == ""
    finally:
        await b.close()
        server.stop()


async def test_refused_and_failed_admissions_leave_no_hold_behind(env: Env) -> None:
    cheap = scripted_model("gpt-4o-mini", [])
    b = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=5),
        on_exhausted=[ab.Downgrade(cheap), ab.CapOutput(1), ab.Refuse("no")],
    )
    ab.configure(budgets=b)
    async with ab.budget(user="u", max_llm_calls=10) as scope:
        for _ in range(3):
            with pytest.raises(ab.BudgetExhausted):
                await Runner.run(agent(), QUESTION)
        held = (scope.account.held_calls, scope.account.held_input, scope.account.held_nanos)
    assert held == (0, 0, 0)
    assert scope.llm_calls == 0 and cheap.calls == ()


@pytest.mark.redis
async def test_a_redis_server_stopped_mid_run_fails_closed_before_the_next_call() -> None:
    server = RedisServer(require_redis_server_binary(), free_port())
    server.start()
    b = ab.Budgets(
        store=server.url, allowances=[ab.Allowance(per="user", window="day", tokens=100_000)]
    )
    guard = ab.Guard(budgets=b)
    try:
        await guard.run(agent(), QUESTION, user="u")
        server.stop()
        after = agent()
        with pytest.raises(ab.StoreUnavailable):
            await guard.run(after, QUESTION, user="u")
        assert after.model.calls == ()  # type: ignore[union-attr]
    finally:
        await b.close()
        server.stop()


async def test_concurrent_runs_crossing_the_soft_threshold_alert_once(env: Env) -> None:
    import asyncio

    per_run = est() + 100
    alerts: list[ab.BudgetAlert] = []
    b = budgets(
        env,
        ab.Allowance(per="global", window="day", tokens=per_run * 40, soft=0.25),
        on_alert=alerts.append,
    )
    guard = ab.Guard(budgets=b)
    await asyncio.gather(*(guard.run(agent(), QUESTION) for _ in range(30)))
    await b.drain()
    assert len(alerts) == 1 and alerts[0].spent >= per_run * 10


async def test_an_unpriceable_call_settles_its_worst_case_not_zero(env: Env) -> None:
    b = budgets(env, ab.Allowance(per="user", window="day", usd="1"))
    model_agent = Agent(
        name="a",
        model=scripted_model(
            "gpt-4o-2024-05-13",
            [  # no cached-input rate
                reply("x", input_tokens=1_000, output_tokens=10, cached_input_tokens=500)
            ],
        ),
        model_settings=ModelSettings(max_tokens=100),
    )
    with pytest.raises(ab.UnknownModelError):
        await ab.Guard(budgets=b).run(model_agent, QUESTION, user="u")
    (row,) = await b.spend(user="u")
    # the reserved worst case: the estimated input and 100 output tokens at $5 / $15 per 1M
    assert row.spent == est() * 5_000 + 100 * 15_000
    assert row.reserved == 0


async def test_reset_forgets_only_the_counters_it_names(env: Env) -> None:
    b = budgets(
        env,
        ab.Allowance(per="user", window="day", tokens=100_000),
        ab.Allowance(per="team", window="day", tokens=100_000),
        ab.Allowance(per="global", window="day", tokens=100_000),
    )
    await ab.Guard(budgets=b).run(agent(), QUESTION, user="u", team="t")
    per_run = est() + 100

    async def spent() -> dict[str, int]:
        return {r.allowance.per: r.spent for r in await b.spend(user="u", team="t")}

    assert await spent() == {"user": per_run, "team": per_run, "global": per_run}
    await b.reset(user="u")
    assert await spent() == {"user": 0, "team": per_run, "global": per_run}
    await b.reset(team="t")
    assert await spent() == {"user": 0, "team": 0, "global": per_run}
    await b.reset()
    assert await spent() == {"user": 0, "team": 0, "global": 0}
