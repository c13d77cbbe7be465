"""OTelSink: GenAI semantic-convention metrics, read back with the SDK's in-memory reader."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent
from helpers.ledger_support import call, realistic, run

import agentbudget as ab
from agentbudget.errors import ConfigurationError
from agentbudget.sinks.otel import OTelSink, provider_name
from agentbudget.testing import reply, scripted_model

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk not installed (extra otel)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def collect(reader: InMemoryMetricReader) -> dict[str, dict[str, Any]]:
    """``{metric name: {"unit": ..., "points": [(attributes, value)]}}``; value is the sum
    for counters and ``(count, sum)`` for histograms."""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, dict[str, Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "agentbudget"
            for metric in scope.metrics:
                points = []
                for point in metric.data.data_points:
                    value = (point.count, point.sum) if hasattr(point, "count") else point.value
                    points.append((dict(point.attributes or {}), value))
                found[metric.name] = {"unit": metric.unit, "points": points}
    return found


def points(metrics: dict[str, dict[str, Any]], name: str) -> dict[tuple[Any, ...], Any]:
    return {
        tuple(sorted(attributes.items())): value for attributes, value in metrics[name]["points"]
    }


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def sink(reader: InMemoryMetricReader) -> OTelSink:
    return OTelSink(MeterProvider(metric_readers=[reader]))


def chat(model: str, provider: str, **more: str) -> dict[str, str]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        **more,
    }


def key(attributes: dict[str, str]) -> tuple[Any, ...]:
    return tuple(sorted(attributes.items()))


def test_token_usage_has_one_point_per_call_and_token_type(
    sink: OTelSink, reader: InMemoryMetricReader
) -> None:
    sink.record(realistic())
    sink.record(run("second", (call("gpt-4o-mini", input_tokens=100, output_tokens=1),)))
    metrics = collect(reader)
    assert metrics["gen_ai.client.token.usage"]["unit"] == "{token}"
    usage = points(metrics, "gen_ai.client.token.usage")
    mini = chat("gpt-4o-mini", "openai")
    assert usage == {
        key({**chat("gpt-4o-2024-08-06", "openai"), "gen_ai.token.type": "input"}): (1, 2048),
        key({**chat("gpt-4o-2024-08-06", "openai"), "gen_ai.token.type": "output"}): (1, 512),
        key({**chat("my-finetune", "unknown"), "gen_ai.token.type": "input"}): (1, 700),
        key({**chat("my-finetune", "unknown"), "gen_ai.token.type": "output"}): (1, 90),
        key({**mini, "gen_ai.token.type": "input"}): (2, 400),
        key({**mini, "gen_ai.token.type": "output"}): (2, 4001),
    }


def test_cost_is_counted_in_usd_and_unpriced_calls_apart(
    sink: OTelSink, reader: InMemoryMetricReader
) -> None:
    sink.record(realistic())
    sink.record(realistic())
    metrics = collect(reader)
    assert metrics["agentbudget.cost"]["unit"] == "USD"
    assert points(metrics, "agentbudget.cost") == {
        key(chat("gpt-4o-2024-08-06", "openai")): pytest.approx(2 * 0.008796001, abs=1e-15),
        key(chat("gpt-4o-mini", "openai")): pytest.approx(2 * 0.002445001, abs=1e-15),
    }
    assert points(metrics, "agentbudget.llm.unpriced_calls") == {
        key(chat("my-finetune", "unknown")): 2
    }


def test_runs_by_outcome_tripped_with_the_limit_and_refusals(
    sink: OTelSink, reader: InMemoryMetricReader
) -> None:
    sink.record(realistic())  # agent triage, tripped on max_tool_calls
    sink.record(run("ok1", (call(),)))
    sink.record(run("ok2", (call(),)))
    sink.record(run("no", outcome="refused", tripped_limit="user/day"))
    sink.record(run("hit", cache_hit=True, saved_usd=Decimal("0.25")))
    metrics = collect(reader)
    assert points(metrics, "agentbudget.runs") == {
        key({"gen_ai.agent.name": "triage", "agentbudget.outcome": "tripped"}): 1,
        key({"gen_ai.agent.name": "support", "agentbudget.outcome": "completed"}): 3,
        key({"gen_ai.agent.name": "support", "agentbudget.outcome": "refused"}): 1,
    }
    assert points(metrics, "agentbudget.runs.tripped") == {
        key({"gen_ai.agent.name": "triage", "agentbudget.limit": "max_tool_calls"}): 1
    }
    assert points(metrics, "agentbudget.runs.refused") == {
        key({"gen_ai.agent.name": "support", "agentbudget.limit": "user/day"}): 1
    }
    assert points(metrics, "agentbudget.cache.saved") == {
        key({"gen_ai.agent.name": "support"}): 0.25
    }


def test_user_and_team_attributes_only_when_opted_in(reader: InMemoryMetricReader) -> None:
    provider = MeterProvider(metric_readers=[reader])
    OTelSink(provider).record(realistic())
    every = [a for m in collect(reader).values() for a, _ in m["points"]]
    assert every and not any("agentbudget.user" in a or "agentbudget.team" in a for a in every)

    reader2 = InMemoryMetricReader()
    OTelSink(MeterProvider(metric_readers=[reader2]), user_attributes=True).record(realistic())
    every = [a for m in collect(reader2).values() for a, _ in m["points"]]
    assert all(a["agentbudget.user"] == "u-42" and "agentbudget.team" not in a for a in every)

    reader3 = InMemoryMetricReader()
    sink = OTelSink(
        MeterProvider(metric_readers=[reader3]), user_attributes=True, team_attributes=True
    )
    sink.record(realistic())
    every = [a for m in collect(reader3).values() for a, _ in m["points"]]
    assert all((a["agentbudget.user"], a["agentbudget.team"]) == ("u-42", "t-7") for a in every)


@pytest.mark.parametrize(
    ("model", "price_key", "local", "provider"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o", False, "openai"),
        ("o3-mini", "o3-mini", False, "openai"),
        ("my-deploy", "gpt-4o", False, "openai"),  # an alias: the price key decides
        ("claude-sonnet-4-5", "claude-sonnet-4-5", False, "anthropic"),
        ("gemini-2.5-pro", None, False, "gcp.gemini"),
        ("mistral-large-latest", None, False, "mistral_ai"),
        ("litellm/anthropic/claude-3-5-haiku", None, False, "anthropic"),
        ("bedrock/anthropic.claude-3", None, False, "aws.bedrock"),
        ("ollama/llama3.1", None, True, "ollama"),
        ("llama3.1", None, True, "local"),
        ("grok-4", None, False, "x_ai"),
        ("my-finetune", None, False, "unknown"),
        ("my-finetune", "*", False, "unknown"),
    ],
)
def test_provider_name_rule(model: str, price_key: str | None, local: bool, provider: str) -> None:
    priced = call(model, cost="0.000000001", local=local)
    assert provider_name(priced.model_copy(update={"price_key": price_key})) == provider


def test_a_guard_run_reaches_the_meter(
    sink: OTelSink, reader: InMemoryMetricReader, close_sdk_loop: None
) -> None:
    guard = ab.Guard(sinks=[sink])
    agent = Agent(
        name="support",
        model=scripted_model("gpt-4o", [reply("Shipped.", input_tokens=30, output_tokens=6)]),
    )
    guard.run_sync(agent, "Where is my order?", user="u-42")
    assert guard.flush(timeout=10)
    metrics = collect(reader)
    usage = points(metrics, "gen_ai.client.token.usage")
    assert usage[key({**chat("gpt-4o", "openai"), "gen_ai.token.type": "input"})] == (1, 30)
    assert points(metrics, "agentbudget.cost") == {key(chat("gpt-4o", "openai")): 0.000135}


def test_bad_arguments_and_a_missing_package_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="user_attributes"):
        OTelSink(user_attributes="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="MeterProvider"):
        OTelSink(object())
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r"agentbudget-sdk\[otel\]"):
        OTelSink()
