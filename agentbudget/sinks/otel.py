"""``OTelSink``: OpenTelemetry GenAI metrics for every governed run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from ..report import LLMCallCost, RunReport

__all__ = ["OTelSink", "provider_name"]

# Bucket boundaries the GenAI semantic conventions advise for gen_ai.client.token.usage.
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)

# First match wins: a model name starting with the prefix belongs to the provider.
_PREFIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gpt-", "gpt4", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci", "babbage",
      "codex", "computer-use", "omni-moderation", "dall-e", "whisper", "tts-"), "openai"),
    (("claude",), "anthropic"),
    (("gemini", "gemma"), "gcp.gemini"),
    (("mistral", "mixtral", "codestral", "ministral", "magistral", "pixtral", "devstral"),
     "mistral_ai"),
    (("command", "embed-"), "cohere"),
    (("deepseek",), "deepseek"),
    (("grok",), "x_ai"),
    (("sonar",), "perplexity"),
)  # fmt: skip

# A "<provider>/<model>" prefix (LiteLLM, OpenRouter, Ollama style) names the provider.
_SLASH_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "ollama": "ollama",
}


def provider_name(call: LLMCallCost) -> str:
    """The ``gen_ai.provider.name`` of a call, derived from its model name.

    The rule, first match wins: a local model is ``"ollama"`` when named ``ollama/...``,
    else ``"local"``; a ``provider/model`` name (``litellm/`` stripped first) maps the
    provider segment to its semantic-convention value (``azure`` -> ``azure.ai.openai``,
    ``bedrock`` -> ``aws.bedrock``...; an unknown segment is used as is); otherwise the
    price key, then the model name, is matched by prefix: ``gpt-``, ``o1``, ``o3``, ``o4``...
    -> ``openai``, ``claude`` -> ``anthropic``, ``gemini`` -> ``gcp.gemini``, ``mistral``...
    -> ``mistral_ai``, ``command`` -> ``cohere``, ``deepseek``, ``grok`` -> ``x_ai``,
    ``sonar`` -> ``perplexity``. Anything else is ``"unknown"``.
    """
    model = call.model.lower()
    if model.startswith("litellm/"):
        model = model[len("litellm/") :]
    if call.local:
        return "ollama" if model.startswith("ollama/") else "local"
    if "/" in model:
        segment = model.split("/", 1)[0]
        return _SLASH_PROVIDERS.get(segment, segment)
    for name in (call.price_key, model):
        if not name or name == "*":
            continue
        lowered = name.lower()
        for prefixes, provider in _PREFIXES:
            if lowered.startswith(prefixes):
                return provider
    return "unknown"


class OTelSink:
    """Records OpenTelemetry metrics for each run, following the GenAI semantic conventions.

    Instruments (meter ``agentbudget``):

    - ``gen_ai.client.token.usage`` (histogram, ``{token}``): one point per LLM call and
      token type, ``gen_ai.token.type`` = ``input`` (all input tokens, cached ones
      included) or ``output`` (reasoning included), with ``gen_ai.operation.name`` =
      ``chat``, ``gen_ai.provider.name`` (see :func:`provider_name`),
      ``gen_ai.request.model`` and ``gen_ai.response.model`` (both the model that served
      the call, as the report records it).
    - ``agentbudget.cost`` (counter, ``USD``): each priced call's exact ``Decimal`` cost as
      a float, with the same model and provider attributes. Unpriced calls add nothing
      and count in ``agentbudget.llm.unpriced_calls``. For exact sums, read the ledger.
    - ``agentbudget.runs`` (counter, ``{run}``): every run, by ``agentbudget.outcome``
      and ``gen_ai.agent.name``.
    - ``agentbudget.runs.tripped`` (counter): tripped runs, by ``agentbudget.limit``.
    - ``agentbudget.runs.refused`` (counter): runs a budget refused, by
      ``agentbudget.limit`` (the report's ``tripped_limit``).
    - ``agentbudget.cache.saved`` (counter, ``USD``): what cache hits saved.

    Args:
        meter_provider: the provider to get the meter from; default the global one
            (``opentelemetry.metrics.get_meter_provider()``).
        user_attributes: add ``agentbudget.user`` to every point (opt in: one series
            per user can be many series).
        team_attributes: add ``agentbudget.team`` likewise.

    Raises:
        ConfigurationError: opentelemetry-api is not installed (the message names the
            ``otel`` extra), or an argument has the wrong type.
    """

    def __init__(
        self,
        meter_provider: Any = None,
        *,
        user_attributes: bool = False,
        team_attributes: bool = False,
    ) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:
            raise ConfigurationError(
                'OTelSink needs OpenTelemetry: pip install "agentbudget-sdk[otel]"'
            ) from exc
        for name, value in (
            ("user_attributes", user_attributes),
            ("team_attributes", team_attributes),
        ):
            if not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be True or False, got {value!r}")
        if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
            raise ConfigurationError(
                f"meter_provider must be an OpenTelemetry MeterProvider, got {meter_provider!r}"
            )
        from .._version import __version__

        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("agentbudget", __version__)
        self.user_attributes = user_attributes
        self.team_attributes = team_attributes
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self._cost = meter.create_counter(
            "agentbudget.cost", unit="USD", description="Cost of priced LLM calls."
        )
        self._unpriced = meter.create_counter(
            "agentbudget.llm.unpriced_calls",
            unit="{call}",
            description="LLM calls without a price.",
        )
        self._runs = meter.create_counter(
            "agentbudget.runs", unit="{run}", description="Governed runs by outcome."
        )
        self._tripped = meter.create_counter(
            "agentbudget.runs.tripped", unit="{run}", description="Runs a limit stopped."
        )
        self._refused = meter.create_counter(
            "agentbudget.runs.refused", unit="{run}", description="Runs a budget refused."
        )
        self._saved = meter.create_counter(
            "agentbudget.cache.saved", unit="USD", description="Cost saved by cache hits."
        )

    def _who(self, report: RunReport) -> dict[str, str]:
        attributes: dict[str, str] = {}
        if self.user_attributes and report.user is not None:
            attributes["agentbudget.user"] = report.user
        if self.team_attributes and report.team is not None:
            attributes["agentbudget.team"] = report.team
        return attributes

    def record(self, report: RunReport) -> None:
        """Record the metrics of one run."""
        who = self._who(report)
        for call in report.calls:
            model = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider_name(call),
                "gen_ai.request.model": call.model,
                "gen_ai.response.model": call.model,
                **who,
            }
            self._tokens.record(call.input_tokens, {**model, "gen_ai.token.type": "input"})
            self._tokens.record(call.output_tokens, {**model, "gen_ai.token.type": "output"})
            if call.cost_usd is None:
                self._unpriced.add(1, model)
            else:
                self._cost.add(float(call.cost_usd), model)
        run = {"gen_ai.agent.name": report.agent, **who}
        self._runs.add(1, {**run, "agentbudget.outcome": report.outcome})
        if report.outcome == "tripped":
            self._tripped.add(1, {**run, "agentbudget.limit": report.tripped_limit or "unknown"})
        elif report.outcome == "refused":
            self._refused.add(1, {**run, "agentbudget.limit": report.tripped_limit or "unknown"})
        if report.cache_hit and report.saved_usd:
            self._saved.add(float(report.saved_usd), run)

    def record_batch(self, reports: Sequence[RunReport]) -> None:
        """Record the metrics of several runs."""
        for report in reports:
            self.record(report)
