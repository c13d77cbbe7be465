"""Per-run (and per-scope) circuit-breaker limits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import ConfigurationError
from .money import parse_usd, usd_to_nanos

__all__ = ["MIN_OUTPUT_TOKENS", "Limits"]

MIN_OUTPUT_TOKENS = 16
"""The smallest output bound a call is sent with (OpenAI rejects ``max_output_tokens`` < 16)."""

_COUNT_FIELDS = (
    "max_tool_calls",
    "max_llm_calls",
    "max_tokens",
    "max_input_tokens",
    "max_output_tokens",
)


@dataclass(frozen=True)
class Limits:
    """Circuit breakers for one run, or cumulatively for every run inside a ``budget()`` scope.

    ``None`` means unlimited. Token and call counts are non-negative integers;
    ``max_cost_usd`` is USD as ``str``, ``int`` or ``Decimal`` (not ``float``);
    ``max_seconds`` is a positive number of seconds.

    Raises:
        ConfigurationError: for negative, NaN, fractional or otherwise invalid values.
    """

    max_tool_calls: int | None = None
    max_llm_calls: int | None = None
    max_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_cost_usd: Decimal | str | int | None = None
    """USD; normalised to ``Decimal`` on construction."""
    max_seconds: float | None = None
    max_cost_nanos: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                    object.__setattr__(self, name, value)
                else:
                    raise ConfigurationError(
                        f"{name} must be a whole number of "
                        f"{'calls' if 'calls' in name else 'tokens'}, got {value!r}"
                    )
            if value < 0:
                raise ConfigurationError(f"{name} must not be negative, got {value}")
        if self.max_cost_usd is not None:
            try:
                cost = parse_usd(self.max_cost_usd, field="max_cost_usd")
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            object.__setattr__(self, "max_cost_usd", cost)
            object.__setattr__(self, "max_cost_nanos", usd_to_nanos(cost, round_up=False))
        else:
            object.__setattr__(self, "max_cost_nanos", None)
        if self.max_seconds is not None:
            seconds = self.max_seconds
            if isinstance(seconds, bool) or not isinstance(seconds, int | float | Decimal):
                raise ConfigurationError(f"max_seconds must be a number, got {seconds!r}")
            seconds = float(seconds)
            if math.isnan(seconds) or seconds <= 0 or math.isinf(seconds):
                raise ConfigurationError(f"max_seconds must be positive and finite, got {seconds}")
            object.__setattr__(self, "max_seconds", seconds)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Limits:
        """Build limits from keyword arguments, naming any unknown keyword."""
        known = {*_COUNT_FIELDS, "max_cost_usd", "max_seconds"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown limit(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**kwargs)
