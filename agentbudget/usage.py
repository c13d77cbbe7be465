"""``TokenUsage``: provider-neutral token usage of one LLM request, in disjoint buckets.

Usage is split into uncached input, cached input, cache writes (5 minute and 1 hour),
output and reasoning (a part of output). Providers report it in many shapes (the SDK's
``Usage``, Chat Completions' ``CompletionUsage``, nulls, floats): ``from_agents_usage``
and ``normalised`` read every one of them without raising.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agents.usage import Usage
from pydantic import ConfigDict, Field, model_validator

from ._validation import Checked as _Checked
from .errors import ConfigurationError

__all__ = ["TokenUsage"]


class TokenUsage(_Checked):
    """Provider-neutral token usage of one LLM request.

    ``input_tokens`` counts every input token, cached and cache-written ones included;
    ``output_tokens`` counts every output token, reasoning included (as OpenAI reports).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    """Tokens written to the prompt cache with the default (5 minute) lifetime."""
    cache_write_1h_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_subsets(self) -> TokenUsage:
        inside = self.cached_input_tokens + self.cache_write_tokens + self.cache_write_1h_tokens
        if inside > self.input_tokens:
            raise ValueError(
                f"cached ({self.cached_input_tokens}) + cache-write ({self.cache_write_tokens} + "
                f"{self.cache_write_1h_tokens}) tokens exceed input_tokens ({self.input_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens "
                f"({self.output_tokens})"
            )
        return self

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def buckets(self, *, separate_reasoning: bool) -> Iterator[tuple[str, int]]:
        """Disjoint ``(rate name, tokens)`` pairs that sum to input + output tokens."""
        writes = self.cache_write_tokens + self.cache_write_1h_tokens
        yield "input", self.input_tokens - self.cached_input_tokens - writes
        yield "cached_input", self.cached_input_tokens
        yield "cache_write_5m", self.cache_write_tokens
        yield "cache_write_1h", self.cache_write_1h_tokens
        if separate_reasoning:
            yield "output", self.output_tokens - self.reasoning_tokens
            yield "reasoning", self.reasoning_tokens
        else:
            yield "output", self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            **{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields}
        )

    @classmethod
    def from_agents_usage(cls, usage: Any) -> TokenUsage:
        """Convert one request's ``agents.Usage`` or ``RequestUsage``; never raises.

        The usage shapes providers really send are normalised here, in one place: a null
        count is 0, cached and cache-written tokens are clamped into the input and
        reasoning tokens into the output (a provider that reports more cached tokens than
        input is believed about the input). Cache writes with a long retention (OpenAI's
        ``ttl_12h_tokens``, Anthropic's 1-hour writes) are their own bucket.
        """
        in_details = getattr(usage, "input_tokens_details", None)
        out_details = getattr(usage, "output_tokens_details", None)
        write_details = getattr(in_details, "cache_write_tokens_details", None)
        long_writes = _count(getattr(write_details, "ttl_12h_tokens", 0))
        return _built(
            cls,
            _count(getattr(usage, "input_tokens", 0)),
            _count(getattr(in_details, "cached_tokens", 0)),
            _count(getattr(in_details, "cache_write_tokens", 0)) - long_writes,
            long_writes,
            _count(getattr(usage, "output_tokens", 0)),
            _count(getattr(out_details, "reasoning_tokens", 0)),
        )

    @classmethod
    def from_anthropic(cls, usage: Any) -> TokenUsage:
        """Convert an Anthropic Messages ``usage`` block (a ``Usage``, a streamed
        ``MessageDeltaUsage`` or its dict); never raises.

        Anthropic's ``input_tokens`` counts only the uncached input: cache reads
        (``cache_read_input_tokens``) and cache writes (``cache_creation_input_tokens``)
        come on top of it. agentbudget's ``input_tokens`` includes both, so the total input
        here is their sum, the input Anthropic bills and picks a long-context tier by.
        Writes are split by lifetime with ``cache_creation.ephemeral_1h_input_tokens`` (the
        rest are 5-minute writes); a split that disagrees with the total is clamped into
        it. Thinking tokens (``output_tokens_details.thinking_tokens``) are part of the
        output, as Anthropic bills them.
        """
        uncached = _count(_field(usage, "input_tokens"))
        reads = _count(_field(usage, "cache_read_input_tokens"))
        creation = _field(usage, "cache_creation")
        short = _count(_field(creation, "ephemeral_5m_input_tokens"))
        long = _count(_field(creation, "ephemeral_1h_input_tokens"))
        total_writes = _field(usage, "cache_creation_input_tokens")
        writes = short + long if total_writes is None else _count(total_writes)
        long = min(long, writes)
        details = _field(usage, "output_tokens_details")
        return cls.normalised(
            input_tokens=uncached + reads + writes,
            cached_input_tokens=reads,
            cache_write_tokens=writes - long,
            cache_write_1h_tokens=long,
            output_tokens=_count(_field(usage, "output_tokens")),
            reasoning_tokens=_count(_field(details, "thinking_tokens")),
        )

    def to_agents_usage(self) -> Usage:
        """This one request's usage as the SDK's ``agents.Usage`` (``requests=1``).

        ``from_agents_usage`` reads it back unchanged: cache reads are ``cached_tokens``,
        all writes ``cache_write_tokens``, and the long-lived writes (Anthropic's 1-hour
        ones) sit in ``cache_write_tokens_details.ttl_12h_tokens``, the SDK's only
        long-retention slot (the 5-minute ones in ``ttl_30m_tokens``).
        """
        from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

        writes = self.cache_write_tokens + self.cache_write_1h_tokens
        details: dict[str, Any] = {
            "cached_tokens": self.cached_input_tokens,
            "cache_write_tokens": writes,
        }
        if self.cache_write_1h_tokens:
            details["cache_write_tokens_details"] = {
                "ttl_12h_tokens": self.cache_write_1h_tokens,
                "ttl_30m_tokens": self.cache_write_tokens,
            }
        return Usage(
            requests=1,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.total_tokens,
            input_tokens_details=InputTokensDetails.model_validate(details),
            output_tokens_details=OutputTokensDetails(reasoning_tokens=self.reasoning_tokens),
        )

    @classmethod
    def normalised(
        cls,
        *,
        input_tokens: int = 0,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        output_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> TokenUsage:
        """A ``TokenUsage`` from counts as a provider reported them; never raises.

        Negative counts are 0. Subsets larger than their total raise the total: a
        provider that says 3 tokens were cached was sent at least 3, and one that says 40
        reasoning tokens were produced produced at least 40.
        """
        return _built(
            cls,
            input_tokens,
            cached_input_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
            output_tokens,
            reasoning_tokens,
        )

    @property
    def is_empty(self) -> bool:
        """No tokens at all: what SDK adapters return when a provider omits usage."""
        return self.input_tokens == 0 and self.output_tokens == 0

    @classmethod
    def per_request(cls, usage: TokenUsage | Usage, *, tiered: bool = False) -> list[TokenUsage]:
        """Split usage into one ``TokenUsage`` per request (tiers and rounding are per request).

        Raises:
            ConfigurationError: when ``tiered`` and ``usage`` sums several requests but
                has no ``request_usage_entries``: a tier applies to one request's input,
                never to a sum, so such a total cannot be priced exactly.
        """
        if isinstance(usage, TokenUsage):
            return [usage]
        if isinstance(usage, Usage):
            total = cls.from_agents_usage(usage)
            entries = [cls.from_agents_usage(entry) for entry in usage.request_usage_entries]
            uncovered = (usage.requests or 0) - len(entries)
            if tiered and entries and uncovered > 1:
                raise ConfigurationError(
                    f"this usage sums {usage.requests} requests but has per-request entries "
                    f"for only {len(entries)}: the other {uncovered} cannot be priced one by "
                    "one, and the model's price has long-context tiers that apply per request "
                    "(price each request's usage, or pass one TokenUsage per request)"
                )
            if not entries:
                if tiered and (usage.requests or 0) > 1:
                    raise ConfigurationError(
                        f"this usage sums {usage.requests} requests without per-request "
                        "entries, and the model's price has long-context tiers that apply "
                        "per request: price each request's usage (the run's "
                        "context_wrapper.usage keeps request_usage_entries, or pass one "
                        "TokenUsage per request)"
                    )
                return [total]
            # Entries may not cover the totals (a Usage built by hand, then add()ed to):
            # whatever they miss is priced as one more request, never dropped.
            covered = sum(entries[1:], entries[0])
            rest = {
                name: max(getattr(total, name) - getattr(covered, name), 0)
                for name in cls.model_fields
            }
            if any(rest.values()):
                writes = rest["cache_write_tokens"] + rest["cache_write_1h_tokens"]
                rest["cached_input_tokens"] = min(
                    rest["cached_input_tokens"], max(rest["input_tokens"] - writes, 0)
                )
                rest["reasoning_tokens"] = min(rest["reasoning_tokens"], rest["output_tokens"])
                entries.append(cls(**rest))
            return entries
        raise TypeError(f"usage must be agents.Usage or TokenUsage, got {type(usage).__name__}")


_FIELDS = tuple(TokenUsage.model_fields)
_new = object.__new__
_set = object.__setattr__


def _built(
    cls: type[TokenUsage],
    input_tokens: int,
    cached: int,
    writes: int,
    long_writes: int,
    output_tokens: int,
    reasoning: int,
) -> TokenUsage:
    """``TokenUsage.normalised`` of these counts, positionally (it runs after every call).

    Negative counts are 0; subsets larger than their total raise the total. What
    ``model_construct`` builds for a complete set of fields, without its per-field loop
    and without a ``max`` call per field.
    """
    if cached < 0:
        cached = 0
    if writes < 0:
        writes = 0
    if long_writes < 0:
        long_writes = 0
    if reasoning < 0:
        reasoning = 0
    inside = cached + writes + long_writes
    if input_tokens < inside:
        input_tokens = inside
    if output_tokens < reasoning:
        output_tokens = reasoning
    usage: TokenUsage = _new(cls)
    _set(
        usage,
        "__dict__",
        {
            "input_tokens": input_tokens,
            "cached_input_tokens": cached,
            "cache_write_tokens": writes,
            "cache_write_1h_tokens": long_writes,
            "output_tokens": output_tokens,
            "reasoning_tokens": reasoning,
        },
    )
    _set(usage, "__pydantic_fields_set__", set(_FIELDS))
    _set(usage, "__pydantic_extra__", None)
    _set(usage, "__pydantic_private__", None)
    return usage


def _field(source: Any, name: str) -> Any:
    """``source.name`` or ``source[name]`` (None when absent)."""
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


def _count(value: Any) -> int:
    """A token count as a provider sent it: None, a float or garbage count as 0."""
    if value.__class__ is int:
        return max(int(value), 0)
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError, OverflowError):
        return 0
