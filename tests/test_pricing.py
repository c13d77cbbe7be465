from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents.models import get_default_model
from hypothesis import given, settings
from hypothesis import strategies as st

import agentbudget as ab
from agentbudget.money import nanos_to_usd, parse_usd, usd_to_nanos
from agentbudget.testing import usage

TABLE = ab.PriceTable.default()

# model: (input, cached input, output) USD per 1M tokens, from the providers' pages.
EXPECTED = {
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "gpt-4o-2024-05-13": ("5.00", None, "15.00"),
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "o3": ("2.00", "0.50", "8.00"),
    "o4-mini": ("1.10", "0.275", "4.40"),
    "gpt-5": ("1.25", "0.125", "10.00"),
    "gpt-5-mini": ("0.25", "0.025", "2.00"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-5.6-luna": ("0.20", "0.02", "1.20"),
    "claude-sonnet-4-5": ("3.00", "0.30", "15.00"),
    "claude-sonnet-4": ("3.00", "0.30", "15.00"),
    "claude-opus-4": ("15.00", "1.50", "75.00"),
    "claude-opus-4-1": ("15.00", "1.50", "75.00"),
    "claude-haiku-4-5": ("1.00", "0.10", "5.00"),
    "claude-3-5-haiku": ("0.80", "0.08", "4.00"),
    "gemini-2.5-pro": ("1.25", "0.125", "10.00"),
    "gemini-2.5-flash": ("0.30", "0.03", "2.50"),
}


@pytest.mark.parametrize(("model", "rates"), sorted(EXPECTED.items()))
def test_listed_model_rates(model: str, rates: tuple[str, str | None, str]) -> None:
    price = TABLE.get(model)
    assert price.input == Decimal(rates[0])
    assert price.cached_input == (None if rates[1] is None else Decimal(rates[1]))
    assert price.output == Decimal(rates[2])
    assert price.source and price.source.startswith("https://")


def test_every_entry_is_cited_and_dated() -> None:
    assert TABLE.version and TABLE.effective_date is not None
    for name, price in TABLE.models().items():
        assert price.source and price.source.startswith("https://"), name
        assert price.max_output_tokens, name


def test_sdk_default_model_is_priced() -> None:
    assert get_default_model() in TABLE


def test_anthropic_cache_writes() -> None:
    price = TABLE.get("claude-sonnet-4-5")
    assert (price.cache_write_5m, price.cache_write_1h) == (Decimal("3.75"), Decimal("6.00"))


def test_dated_snapshots_are_explicit() -> None:
    assert TABLE.resolve("gpt-4o-2024-08-06") == "gpt-4o"
    assert TABLE.resolve("gpt-4o-2024-05-13") == "gpt-4o-2024-05-13"
    assert TABLE.get("gpt-4o-2024-05-13").input == Decimal("5.00")
    assert TABLE.resolve("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    with pytest.raises(ab.UnknownModelError):
        TABLE.resolve("gpt-4o-2031-01-01")  # never strip a date blindly


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("openai/gpt-4o", "gpt-4o"),
        ("litellm/anthropic/claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
        ("gemini/gemini-2.5-flash", "gemini-2.5-flash"),
        ("GPT-4o-Mini", "gpt-4o-mini"),
    ],
)
def test_routing_prefixes_are_stripped(name: str, key: str) -> None:
    assert TABLE.resolve(name) == key


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(ab.UnknownModelError) as info:
        TABLE.get("gpt-4oo")
    assert "gpt-4o" in info.value.known
    assert "with_prices" in str(info.value)
    assert "acme/gpt-4o" not in TABLE  # only declared prefixes are stripped


def test_cost_buckets_are_exact() -> None:
    # 800 uncached * 2.50 + 200 cached * 1.25 + 500 output * 10 = 7,250 USD / 1M
    u = ab.TokenUsage(input_tokens=1_000, cached_input_tokens=200, output_tokens=500)
    assert TABLE.cost("gpt-4o", u) == Decimal("0.007250000")


def test_cost_rounds_up_per_request() -> None:
    # $0.0001 / 1M tokens is 0.1 nano-dollar a token: each request rounds up to a whole nano
    table = ab.PriceTable({"tiny": ab.ModelPrice(input="0.0001", output="1")})
    assert table.cost_nanos("tiny", ab.TokenUsage(input_tokens=1)) == 1
    assert table.cost_nanos("tiny", ab.TokenUsage(input_tokens=2)) == 1
    two_requests = usage(1, 0)
    two_requests.add(usage(1, 0))
    assert table.cost_nanos("tiny", two_requests) == 2
    assert table.cost("tiny", two_requests) == Decimal("0.000000002")


def test_reasoning_bills_as_output_unless_priced_apart() -> None:
    u = ab.TokenUsage(input_tokens=0, output_tokens=1_000_000, reasoning_tokens=600_000)
    assert TABLE.cost("o3", u) == Decimal("8.000000000")
    special = ab.ModelPrice(input="1", output="2", reasoning="5")
    assert special.cost(u) == Decimal("3.800000000")  # 400k*2 + 600k*5


def test_long_context_tier_switches_the_whole_request() -> None:
    pro = TABLE.get("gemini-2.5-pro")
    at = ab.TokenUsage(input_tokens=200_000, output_tokens=1_000_000)
    above = ab.TokenUsage(input_tokens=200_001, output_tokens=1_000_000)
    assert pro.cost(at) == Decimal("0.25") + Decimal("10")
    assert pro.cost(above) == Decimal("15") + Decimal("200001") * Decimal("2.50") / 10**6


def test_cache_write_without_rate_is_an_error() -> None:
    price = ab.ModelPrice(input="3", output="12")
    with pytest.raises(ab.UnknownModelError, match="cached_input"):
        price.cost(ab.TokenUsage(input_tokens=10, cached_input_tokens=5))
    assert price.cost(ab.TokenUsage(input_tokens=10)) == Decimal("0.000030")


def test_agents_usage_with_cache_writes_is_priced() -> None:
    u = usage(1_000, 10, cached_input_tokens=100, cache_write_tokens=400)
    # claude-haiku-4-5: 500*1 + 100*0.10 + 400*1.25 + 10*5 = 1,060 USD / 1M
    assert TABLE.cost("claude-haiku-4-5", u) == Decimal("0.001060000")


def test_inconsistent_usage_is_rejected() -> None:
    with pytest.raises(ab.ConfigurationError, match="exceed input_tokens"):
        ab.TokenUsage(input_tokens=10, cached_input_tokens=11)
    with pytest.raises(ab.ConfigurationError, match="reasoning"):
        ab.TokenUsage(output_tokens=1, reasoning_tokens=2)
    with pytest.raises(ab.ConfigurationError, match=r"TokenUsage: input_tokens: .*greater than"):
        ab.TokenUsage(input_tokens=-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input": "-1", "output": "2"}, "ModelPrice: input: input must not be negative"),
        ({"input": "1", "output": "x"}, "ModelPrice: output: output must be a decimal number"),
        ({"input": "1", "output": "2", "bogus": 1}, "ModelPrice: bogus: Extra inputs"),
        ({"input": "1", "output": "2", "max_output_tokens": 0}, r"max_output_tokens: .*greater"),
        (
            {"input": "1", "output": "2", "tiers": [{"above_input_tokens": 0, "input": "1"}]},
            r"tiers\.0\.above_input_tokens",
        ),
    ],
)
def test_bad_prices_raise_configuration_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ab.ConfigurationError, match=message) as info:
        ab.ModelPrice(**kwargs)
    assert isinstance(info.value, ValueError)  # ConfigurationError is also a ValueError


def test_floats_never_enter_money() -> None:
    with pytest.raises(ab.ConfigurationError, match="float"):
        ab.ModelPrice(input=2.5, output="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float"):
        parse_usd(0.1)
    assert usd_to_nanos(Decimal("0.0000000011")) == 2
    assert usd_to_nanos(Decimal("0.0000000019"), round_up=False) == 1
    assert nanos_to_usd(1) == Decimal("0.000000001")


def test_with_prices_layers_and_leaves_the_original() -> None:
    mine = TABLE.with_prices(
        {
            "my-ft": ab.ModelPrice(input="3", output="12"),
            "gpt-4o": ab.ModelPrice(input="1", output="1"),
        }
    )
    assert mine.get("my-ft").input == Decimal("3")
    assert mine.get("openai/gpt-4o").input == Decimal("1")
    assert "my-ft" not in TABLE
    assert TABLE.get("gpt-4o").input == Decimal("2.50")
    with pytest.raises(ab.ConfigurationError):
        TABLE.with_prices({"x": {"input": "1"}})  # type: ignore[dict-item]


def test_fallback_prices_unknown_models() -> None:
    table = TABLE.with_fallback(ab.ModelPrice(input="10", output="10"))
    assert table.resolve("mystery-model") == "*"
    assert table.cost("mystery-model", ab.TokenUsage(input_tokens=100_000)) == Decimal("1")


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _valid() -> dict[str, object]:
    return {
        "schema": 1,
        "version": "t",
        "effective_date": "2026-01-01",
        "currency": "USD",
        "unit": "per_1m_tokens",
        "strip_prefixes": ["acme/"],
        "models": {
            "m1": {
                "input": "1",
                "output": "2",
                "aliases": ["m1-2026"],
                "source": "https://example.test",
            }
        },
    }


def test_from_file_roundtrip(tmp_path: Path) -> None:
    table = ab.PriceTable.from_file(_write(tmp_path, _valid()))
    assert table.resolve("acme/m1-2026") == "m1"
    assert table.get("m1").output == Decimal("2")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["models"]["m1"].update(input=1.5), "models.m1"),
        (lambda d: d["models"]["m1"].update(output="-1"), "models.m1.output"),
        (lambda d: d["models"]["m1"].update(outptu="1"), "models.m1.outptu"),
        (lambda d: d["models"]["m1"].pop("output"), "models.m1.output"),
        (lambda d: d.update(currency="EUR"), "currency"),
        (
            lambda d: d["models"]["m1"].update(tiers=[{"above_input_tokens": 10, "input": "2"}]),
            "models.m1",
        ),
        (
            lambda d: d["models"].update(m2={"input": "1", "output": "1", "aliases": ["m1-2026"]}),
            "m1-2026",
        ),
    ],
)
def test_malformed_price_files_name_entry_and_field(tmp_path: Path, mutate, message) -> None:  # type: ignore[no-untyped-def]
    data = _valid()
    mutate(data)
    with pytest.raises(ab.ConfigurationError, match=message.replace(".", r"\.")):
        ab.PriceTable.from_file(_write(tmp_path, data))


def test_price_file_not_json(tmp_path: Path) -> None:
    with pytest.raises(ab.ConfigurationError, match="not valid JSON"):
        ab.PriceTable.from_file(_write(tmp_path, "{nope"))
    with pytest.raises(ab.ConfigurationError, match="cannot read"):
        ab.PriceTable.from_file(tmp_path / "missing.json")


token_counts = st.integers(min_value=0, max_value=2_000_000)


@settings(max_examples=200, deadline=None)
@given(requests=st.lists(st.tuples(token_counts, token_counts), min_size=1, max_size=8))
def test_run_cost_is_the_sum_of_request_costs(requests: list[tuple[int, int]]) -> None:
    total = usage(0, 0)
    total.requests = 0
    for inp, out in requests:
        total.add(usage(inp, out))
    expected = sum(
        TABLE.cost("gpt-4o-mini", ab.TokenUsage(input_tokens=i, output_tokens=o))
        for i, o in requests
    )
    assert TABLE.cost("gpt-4o-mini", total) == expected


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        # at most 6 x 30,000 input tokens: below every tier threshold (100k+)
        st.tuples(st.integers(0, 20_000), st.integers(0, 10_000), st.integers(0, 50_000)),
        min_size=1,
        max_size=6,
    ),
    model=st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude-haiku-4-5", "gpt-5.6-luna"]),
)
def test_cost_is_invariant_to_how_tokens_are_split(
    parts: list[tuple[int, int, int]], model: str
) -> None:
    # Within one tier the run's cost depends only on its token totals, however the tokens
    # were spread over requests (these rates are whole nano-dollars per token).
    def one(uncached: int, cached: int, out: int) -> ab.TokenUsage:
        return ab.TokenUsage(
            input_tokens=uncached + cached, cached_input_tokens=cached, output_tokens=out
        )

    whole = one(*(sum(p[k] for p in parts) for k in range(3)))
    split = sum(TABLE.cost(model, one(*p)) for p in parts)
    assert split == TABLE.cost(model, whole)


def test_rates_finer_than_a_pico_dollar_per_token_are_still_exact() -> None:
    # $0.0000001 per 1M tokens is 0.1 pico-dollar a token: billed through Decimal, exactly
    price = ab.ModelPrice(input="0.0000001", output="0.0000003")
    assert price.cost_nanos(ab.TokenUsage(input_tokens=10_000)) == 1
    assert price.cost_nanos(ab.TokenUsage(input_tokens=10_001)) == 2
    assert price.cost_nanos(ab.TokenUsage(input_tokens=10_000, output_tokens=10_000)) == 4
    assert price.pico("input") == 1  # rounded up where only a bound is needed


_RATE_SETS = [
    {"input": "2.5", "output": "10"},
    {"input": "2.5", "output": "10", "cached_input": "1.25"},
    {"input": "1", "output": "4", "cached_input": "0.1", "reasoning": "8"},
    {"input": "3", "output": "15", "cached_input": "0.3", "cache_write_5m": "3.75"},
    {"input": "0.0000001", "output": "0.0000003"},  # not whole pico-USD: the Decimal path
]


@settings(max_examples=300, deadline=None)
@given(
    rates=st.sampled_from(_RATE_SETS),
    uncached=st.integers(0, 10**7),
    cached=st.integers(0, 10**7),
    output=st.integers(0, 10**6),
    reasoning=st.integers(0, 10**6),
)
def test_unrolled_cost_equals_the_exact_decimal_cost(
    rates: dict[str, str], uncached: int, cached: int, output: int, reasoning: int
) -> None:
    # cost_nanos prices the commonest call (integer rates, no cache writes) unrolled: it
    # must equal the bucket-by-bucket Decimal sum, rounded up once, for every usage
    price = ab.ModelPrice(**rates)
    usage_ = ab.TokenUsage(
        input_tokens=uncached + cached,
        cached_input_tokens=cached,
        output_tokens=output + reasoning,
        reasoning_tokens=reasoning,
    )
    exact = Decimal(0)
    for bucket, tokens in usage_.buckets(separate_reasoning=price.reasoning is not None):
        if tokens:
            rate = getattr(price, bucket)
            if rate is None:
                with pytest.raises(ab.UnknownModelError):
                    price.cost_nanos(usage_)
                return
            exact += rate * tokens / 1_000_000
    assert price.cost_nanos(usage_) == math.ceil(exact * 10**9)


def test_worst_rates_are_the_highest_a_token_can_be_billed_at() -> None:
    # what a call's worst case is held at: a cache write above the input rate, reasoning
    # above the output rate
    plain = ab.ModelPrice(input="2.5", output="10", cached_input="1.25")
    assert plain.worst_pico_rates() == (2_500_000, 10_000_000)
    writes = ab.ModelPrice(input="3", output="15", cache_write_5m="3.75", cache_write_1h="6")
    assert writes.worst_pico_rates() == (6_000_000, 15_000_000)
    thinking = ab.ModelPrice(input="1", output="4", reasoning="8")
    assert thinking.worst_pico_rates() == (1_000_000, 8_000_000)
