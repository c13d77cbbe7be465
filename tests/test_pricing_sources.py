"""Issue 11: the genai-prices long tail, tiers, dated prices, names, local models, service
tiers, minimal price files, staleness and the drift check."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, ModelSettings

import agentbudget as ab
from agentbudget import pricing
from agentbudget.cli import main
from agentbudget.price_sources import GenaiPrices
from agentbudget.testing import NamedScriptedModel, reply, scripted_model

BUNDLED = ab.PriceTable.bundled()
DEFAULT = ab.PriceTable.default()


def tokens(inp: int, out: int = 0, **more: int) -> ab.TokenUsage:
    return ab.TokenUsage(input_tokens=inp, output_tokens=out, **more)


# --- tiers ------------------------------------------------------------------------------


def test_claude_sonnet_4_5_above_200k_costs_exactly_1_8225() -> None:
    assert BUNDLED.cost("claude-sonnet-4-5", tokens(300_000, 1_000)) == Decimal("1.8225")
    assert DEFAULT.cost("claude-sonnet-4-5", tokens(300_000, 1_000)) == Decimal("1.8225")
    # at the threshold the standard rates still apply
    assert BUNDLED.cost("claude-sonnet-4-5", tokens(200_000, 1_000)) == Decimal("0.615")


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-sonnet-4"])
def test_sonnet_long_context_cache_rates_are_scaled(model: str) -> None:
    (tier,) = BUNDLED.get(model).tiers
    assert tier.above_input_tokens == 200_000
    assert (tier.input, tier.output) == (Decimal(6), Decimal("22.50"))
    assert (tier.cached_input, tier.cache_write_5m, tier.cache_write_1h) == (
        Decimal("0.60"),
        Decimal("7.50"),
        Decimal(12),
    )
    # 250k input of which 100k cache reads and 50k 1h writes, 10k output
    cost = BUNDLED.cost(
        model, tokens(250_000, 10_000, cached_input_tokens=100_000, cache_write_1h_tokens=50_000)
    )
    assert cost == Decimal("0.6") + Decimal("0.06") + Decimal("0.6") + Decimal("0.225")


def test_gpt_5_5_tiers_above_272k() -> None:
    assert BUNDLED.cost("gpt-5.5", tokens(300_000, 1_000, cached_input_tokens=100_000)) == (
        Decimal("2.0") + Decimal("0.1") + Decimal("0.045")
    )
    assert BUNDLED.cost("gpt-5.5-pro", tokens(300_000, 1_000)) == Decimal("18.27")
    assert BUNDLED.cost("gpt-5.5-pro", tokens(272_000, 0)) == Decimal("8.16")


# --- the long tail ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "rates"),
    [
        ("gemini-3.6-flash", ("0.75", "3.75")),
        ("gpt-6-astra", ("10", "50")),
        ("claude-opus-4-8", ("5", "25")),
    ],
)
def test_long_tail_models_are_priced_and_the_source_named(
    model: str, rates: tuple[str, str]
) -> None:
    key, price = DEFAULT.lookup(model, at=date(2026, 12, 1))
    assert key == model
    assert (price.input, price.output) == (Decimal(rates[0]), Decimal(rates[1]))
    assert price.price_source == "genai-prices 0.2.3"
    with pytest.raises(ab.UnknownModelError):
        BUNDLED.get(model)


def test_bundled_entries_win_over_genai_prices() -> None:
    # genai-prices still has the $4/$20 promotion; the bundled table ended it
    price = DEFAULT.get("gpt-5.6-sol", at=date(2026, 12, 1))
    assert (price.input, price.output) == (Decimal(5), Decimal(30))
    assert price.price_source == "bundled 2026.11.29"


def test_genai_tiers_dates_and_service_tiers_are_compiled() -> None:
    astra = DEFAULT.get("gpt-6-astra", at=date(2026, 12, 1))
    assert [t.above_input_tokens for t in astra.tiers] == [272_000]
    assert DEFAULT.cost("gpt-6-astra", tokens(300_000, 1_000)) == Decimal("6") + Decimal("0.075")
    assert astra.for_service_tier("flex")[0].input == Decimal(5)
    assert astra.for_service_tier("priority")[0].output == Decimal(100)
    # gemini-3.6-flash doubles on 2027-01-01 in genai-prices: priced at the rates of the day
    assert DEFAULT.get("gemini-3.6-flash", at=date(2026, 12, 31)).input == Decimal("0.75")
    assert DEFAULT.get("gemini-3.6-flash", at=date(2027, 1, 1)).input == Decimal("1.5")


def test_genai_entries_are_compiled_once() -> None:
    source = GenaiPrices()
    first = source.find("claude-opus-4-8")
    assert first is not None
    assert source.find("claude-opus-4-8") is first
    assert source.find("no-such-model-anywhere-xyz") is None
    assert "no-such-model-anywhere-xyz" in source._cache


def test_genai_prices_is_imported_only_for_the_long_tail() -> None:
    code = (
        "import sys, agentbudget as ab\n"
        "t = ab.PriceTable.default()\n"
        "t.cost('gpt-4o', ab.TokenUsage(input_tokens=10))\n"
        "assert 'azure/gpt-4o' in t and 'ollama/x' in t\n"
        "print('genai_prices' in sys.modules)\n"
        "t.get('claude-opus-4-8')\n"
        "print('genai_prices' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "True"]


# --- dated prices -----------------------------------------------------------------------


def test_gpt_5_6_sol_promotion_ends_on_its_date() -> None:
    on_last_day = BUNDLED.get("gpt-5.6-sol", at=date(2026, 11, 21))
    after = BUNDLED.get("gpt-5.6-sol", at=date(2026, 11, 22))
    assert (on_last_day.input, on_last_day.output) == (Decimal(4), Decimal(20))
    assert (after.input, after.output) == (Decimal(5), Decimal(30))
    assert len(BUNDLED.rate_sets("gpt-5.6")) == 2  # the alias has both sets too
    usage_ = tokens(200_000, 200_000)
    assert BUNDLED.cost("gpt-5.6", usage_, at=date(2026, 11, 1)) == Decimal("4.8")
    assert BUNDLED.cost("gpt-5.6", usage_, at=date(2026, 12, 1)) == Decimal("7.0")


async def test_a_request_is_priced_at_the_rates_in_force_when_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard = ab.Guard(prices=BUNDLED)
    for day, expected in [(date(2026, 11, 21), "2.4"), (date(2026, 11, 22), "3.5")]:
        monkeypatch.setattr(pricing, "_today", lambda day=day: day)
        agent = Agent(
            name="a",
            model=scripted_model(
                "gpt-5.6-sol", [reply("ok", input_tokens=100_000, output_tokens=100_000)]
            ),
        )
        result = await guard.run(agent, "hi")
        assert ab.report_of(result).cost_usd == Decimal(expected)


def test_dated_rate_sets_are_validated() -> None:
    early = ab.ModelPrice(input="1", output="2", effective_until=date(2026, 1, 31))
    late = ab.ModelPrice(input="3", output="4", effective_from=date(2026, 2, 1))
    table = ab.PriceTable({"m": [late, early]})
    assert table.get("m", at=date(2026, 1, 31)).input == Decimal(1)
    assert table.get("m", at=date(2026, 2, 1)).input == Decimal(3)
    overlapping = ab.ModelPrice(input="3", output="4", effective_from=date(2026, 1, 15))
    with pytest.raises(ab.ConfigurationError, match="overlap"):
        ab.PriceTable({"m": [early, overlapping]})
    with pytest.raises(ValueError, match="after effective_until"):
        ab.ModelPrice(
            input="1",
            output="1",
            effective_from=date(2026, 2, 1),
            effective_until=date(2026, 1, 1),
        )
    future_only = ab.PriceTable({"m": late})
    with pytest.raises(ab.UnknownModelError, match="no price in force on 2026-01-01"):
        future_only.get("m", at=date(2026, 1, 1))


def test_dated_sets_in_a_price_file(tmp_path: Path) -> None:
    data = {
        "models": {
            "m": {
                "input": "5",
                "output": "30",
                "effective_from": "2026-11-22",
                "provider": "acme",
                "dated": [{"input": "4", "output": "20", "effective_until": "2026-11-21"}],
            }
        }
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    table = ab.PriceTable.from_file(path)
    promo = table.get("m", at=date(2026, 11, 21))
    assert (promo.input, promo.provider) == (Decimal(4), "acme")
    assert table.get("m", at=date(2026, 11, 22)).output == Decimal(30)


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("azure/gpt-4o", "gpt-4o"),
        ("openrouter/openai/gpt-4o", "gpt-4o"),
        ("bedrock/anthropic.claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("vertex_ai/gemini-2.5-pro", "gemini-2.5-pro"),
        ("azure_ai/gpt-4o-mini", "gpt-4o-mini"),
        ("openrouter/anthropic/claude-opus-4-8", "claude-opus-4-8"),
    ],
)
def test_platform_prefixes_are_stripped(name: str, key: str) -> None:
    assert DEFAULT.resolve(name) == key


def test_azure_gpt_4o_costs_what_gpt_4o_costs() -> None:
    usage_ = tokens(10_000, 500, cached_input_tokens=2_000)
    assert DEFAULT.cost("azure/gpt-4o", usage_) == DEFAULT.cost("gpt-4o", usage_)


def test_with_aliases_names_deployments() -> None:
    table = BUNDLED.with_aliases({"my-deployment": "gpt-4o", "prod-sonnet": "claude-sonnet-4-5"})
    assert table.resolve("azure/my-deployment") == "gpt-4o"
    assert table.get("prod-sonnet").input == Decimal(3)
    with pytest.raises(ab.UnknownModelError):
        BUNDLED.resolve("my-deployment")  # the original is unchanged
    with pytest.raises(ab.ConfigurationError, match="cannot price"):
        BUNDLED.with_aliases({"x": "no-such-model"})
    with pytest.raises(ab.ConfigurationError, match="already a model"):
        BUNDLED.with_aliases({"gpt-4o": "gpt-4o-mini"})
    tail = DEFAULT.with_aliases({"opus-deploy": "claude-opus-4-8"})
    assert tail.lookup("opus-deploy")[0] == "claude-opus-4-8"


def test_prefixes_extend_from_the_api_and_the_file(tmp_path: Path) -> None:
    assert "myproxy/gpt-4o" not in BUNDLED
    assert BUNDLED.with_prefixes(["myproxy/"]).resolve("myproxy/azure/gpt-4o") == "gpt-4o"
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"strip_prefixes": ["acme/"], "models": {"m": {"input": "1", "output": "2"}}})
    )
    table = ab.PriceTable.from_file(path)
    assert table.resolve("acme/azure/m") == "m"  # declared and default prefixes


# --- local models -----------------------------------------------------------------------


def test_ollama_models_cost_nothing_and_are_local() -> None:
    key, price = BUNDLED.lookup("ollama/llama3.1")
    assert key == "ollama/llama3.1" and price.local and price.price_source == "local"
    assert BUNDLED.cost("ollama/llama3.1", tokens(50_000, 5_000)) == Decimal(0)
    assert BUNDLED.cost("ollama_chat/qwen3:8b", tokens(1, 1)) == Decimal(0)


def test_declared_local_models_and_undeclared_unknowns() -> None:
    table = BUNDLED.with_local_models(["llama3.1", "my-finetune"])
    assert table.get("llama3.1").local
    assert table.cost("litellm/my-finetune", tokens(100, 100)) == Decimal(0)
    with pytest.raises(ab.UnknownModelError):
        table.get("lama3.1")  # a typo is not local
    with pytest.raises(ab.UnknownModelError):
        DEFAULT.get("gpt-7-typo-model")  # nor is an unknown paid model


def test_a_priced_model_under_ollama_uses_its_price() -> None:
    price = ab.ModelPrice(input="0.01", output="0.02")
    table = BUNDLED.with_prices({"llama3.1": price})
    key, found = table.lookup("ollama/llama3.1")
    assert key == "llama3.1" and not found.local
    assert table.cost("ollama/llama3.1", tokens(1_000_000)) == Decimal("0.01")


async def test_local_and_sourced_calls_in_the_report() -> None:
    guard = ab.Guard(limits=ab.Limits(max_cost_usd="1"))
    agent = Agent(name="a", model=scripted_model("ollama/llama3.1", [reply("hi")]))
    (call,) = ab.report_of(await guard.run(agent, "hi")).calls
    assert (call.cost_usd, call.local, call.price_source) == (Decimal(0), True, "local")
    agent = Agent(name="b", model=scripted_model("azure/gpt-4o", [reply("hi")]))
    (call,) = ab.report_of(await guard.run(agent, "hi")).calls
    assert call.price_key == "gpt-4o" and call.price_source == "bundled 2026.11.29"
    assert not call.local
    agent = Agent(name="c", model=scripted_model("claude-opus-4-8", [reply("hi")]))
    (call,) = ab.report_of(await guard.run(agent, "hi")).calls
    assert call.price_source == "genai-prices 0.2.3"
    assert call.cost_usd == Decimal("0.001")  # 100 x $5/M + 20 x $25/M


# --- service tiers ----------------------------------------------------------------------


class TieredModel(NamedScriptedModel):
    """A scripted model whose responses report a service tier."""

    def __init__(self, model: str, steps: Any, tier: str) -> None:
        super().__init__(model, steps)
        self.tier = tier

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().get_response(*args, **kwargs)
        return dataclasses.replace(response, raw_usage={"service_tier": self.tier})

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for event in super().stream_response(*args, **kwargs):
            if getattr(event, "type", None) == "response.completed":
                event.response.service_tier = self.tier
            yield event


def test_service_tier_rates_in_the_table() -> None:
    gpt5 = BUNDLED.get("gpt-5")
    assert gpt5.for_service_tier("flex")[0].input == Decimal("0.625")
    assert gpt5.for_service_tier("priority")[0].output == Decimal(20)
    assert gpt5.for_service_tier("default") == (gpt5, True)
    assert gpt5.for_service_tier("scale") == (gpt5, False)  # not published: standard
    terra = BUNDLED.get("gpt-6.1-terra")  # a multiplier in the file scales tiers too
    assert terra.for_service_tier("priority")[0].tiers[0].output == Decimal(15)


def test_multiplier_service_tiers_in_a_price_file() -> None:
    table = ab.PriceTable.from_dict(
        {
            "models": {
                "m": {
                    "input": "2",
                    "output": "8",
                    "cached_input": "0.5",
                    "service_tiers": {"Flex": "0.5", "priority": {"input": "4", "output": "20"}},
                }
            }
        }
    )
    flex = table.get("m").service_tiers["flex"]
    assert (flex.input, flex.cached_input, flex.output) == (Decimal(1), Decimal("0.25"), 4)
    assert table.get("m").service_tiers["priority"].output == Decimal(20)


@pytest.mark.parametrize("streamed", [False, True])
async def test_reported_service_tier_prices_the_call(streamed: bool) -> None:
    guard = ab.Guard()
    steps = [reply("ok", input_tokens=1_000_000, output_tokens=100_000)]
    agent = Agent(name="a", model=TieredModel("gpt-5", steps, "flex"))
    if streamed:
        result: Any = guard.run_streamed(agent, "hi")
        async for _ in result.stream_events():
            pass
    else:
        result = await guard.run(agent, "hi")
    (call,) = ab.report_of(result).calls
    assert call.service_tier == "flex" and not call.priced_at_standard_rate
    assert call.cost_usd == Decimal("0.625") + Decimal("0.5")


async def test_unpublished_tier_is_priced_standard_and_marked() -> None:
    steps = [reply("ok", input_tokens=100_000, output_tokens=0)]
    agent = Agent(name="a", model=TieredModel("claude-sonnet-4-5", steps, "priority"))
    (call,) = ab.report_of(await ab.Guard().run(agent, "hi")).calls
    assert call.service_tier == "priority" and call.priced_at_standard_rate
    assert call.cost_usd == Decimal("0.3")


async def test_requested_tier_without_a_report_never_charges_less() -> None:
    guard = ab.Guard()
    for tier, expected in [("priority", "2.5"), ("flex", "1.25")]:
        agent = Agent(
            name="a",
            model=scripted_model("gpt-5", [reply("ok", input_tokens=1_000_000, output_tokens=0)]),
            model_settings=ModelSettings(extra_args={"service_tier": tier}),
        )
        (call,) = ab.report_of(await guard.run(agent, "hi")).calls
        assert call.service_tier == tier
        assert call.cost_usd == Decimal(expected)


# --- files and staleness ----------------------------------------------------------------


def test_minimal_price_file_loads_with_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"models": {"m": {"input": "1", "output": "2"}}}))
    table = ab.PriceTable.from_file(path)
    assert table.version is None and table.effective_date is None
    assert table.resolve("azure/m") == "m"
    assert table.get("m").price_source == "mine.json"
    assert table.cost("m", tokens(1_000_000, 1_000_000)) == Decimal(3)
    with pytest.raises(ab.ConfigurationError, match="models"):
        ab.PriceTable.from_dict({})


def test_stale_table_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    effective = date.today() - timedelta(days=30)
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        table = ab.PriceTable(
            {"m": ab.ModelPrice(input="1", output="1")},
            version="stale-test",
            effective_date=effective,
        )
        assert not table.check_staleness(today=effective + timedelta(days=90))
        assert table.check_staleness(today=effective + timedelta(days=91))
        assert table.check_staleness(today=effective + timedelta(days=200))
        table.with_prices({}).check_staleness(today=effective + timedelta(days=200))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert str(effective) in warnings[0] and "PriceTable.from_file" in warnings[0]


# --- the drift check --------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_prices_check_runs_offline_and_lists_differences(
    offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prices", "--check"]) == 0
    out = capsys.readouterr().out
    assert "against genai-prices 0.2.3 (offline)" in out
    sol = [line for line in out.splitlines() if "gpt-5.6-sol" in line and " output " in line]
    assert sol and sol[0].startswith("reviewed") and "table 30" in sol[0]
    assert "0 not reviewed" in out


def test_prices_check_flags_an_unreviewed_difference(
    offline: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            {"models": {"gpt-4o": {"input": "2.00", "cached_input": "1.25", "output": "10.00"}}}
        )
    )
    assert main(["prices", "--check", "--file", str(path)]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("NEW"))
    assert line.split()[1:3] == ["gpt-4o", "input"]
    assert "table 2 " in line and "genai 2.5" in line
    assert "not reviewed" in out


def test_layered_tables_do_not_share_resolved_names() -> None:
    assert DEFAULT.lookup("azure/claude-opus-4-8")[1].price_source == "genai-prices 0.2.3"
    mine = DEFAULT.with_prices({"claude-opus-4-8": ab.ModelPrice(input="1", output="1")})
    key, price = mine.lookup("azure/claude-opus-4-8")
    assert (key, price.input, price.price_source) == ("claude-opus-4-8", Decimal(1), "with_prices")
    assert DEFAULT.get("azure/claude-opus-4-8").input == Decimal(5)
