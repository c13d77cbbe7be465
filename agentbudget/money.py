"""Exact money: integer nano-USD inside, ``Decimal`` USD outside.

Prices are ``Decimal`` USD per 1M tokens. A request's cost is computed exactly and
rounded *up* to a whole nano-dollar (1e-9 USD), so a run's total is the exact sum of
its requests' costs. No float ever enters a money path: floats are rejected.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

__all__ = [
    "NANOS_PER_USD",
    "affordable_output",
    "nanos_to_usd",
    "parse_usd",
    "pico_to_nanos",
    "usd_to_nanos",
]

NANOS_PER_USD = 10**9
_CONTEXT = decimal.Context(
    prec=80, rounding=decimal.ROUND_CEILING, traps=[decimal.InvalidOperation]
)
_NANO = Decimal("0.000000001")


def parse_usd(value: object, *, field: str = "amount") -> Decimal:
    """Parse a USD amount given as ``Decimal``, ``str`` or ``int`` (never ``float``).

    Raises:
        ValueError: for floats, NaN, infinities, negatives and unparsable text.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(
            f"{field} must be a Decimal, str or int, not {type(value).__name__} "
            f"({value!r}); floats are not exact, write it as a string like '0.50'"
        )
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"{field} must be a decimal number, got {value!r}") from None
    else:
        raise ValueError(f"{field} must be a Decimal, str or int, got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError(f"{field} must be finite, got {value!r}")
    if amount < 0:
        raise ValueError(f"{field} must not be negative, got {value!r}")
    return amount


def usd_to_nanos(amount: Decimal, *, round_up: bool = True) -> int:
    """Convert USD to integer nano-USD, rounding up (costs) or down (limits)."""
    scaled = _CONTEXT.multiply(amount, Decimal(NANOS_PER_USD))
    rounding = decimal.ROUND_CEILING if round_up else decimal.ROUND_FLOOR
    return int(scaled.to_integral_value(rounding=rounding))


def nanos_to_usd(nanos: int) -> Decimal:
    """Convert integer nano-USD to ``Decimal`` USD with nine decimal places (``0`` for zero)."""
    if nanos == 0:
        return Decimal(0)
    return (Decimal(nanos) * _NANO).quantize(_NANO)


def rate_cost_nanos(tokens: int, rate_per_million: Decimal) -> Decimal:
    """Exact cost in (fractional) nano-USD of ``tokens`` at ``rate_per_million`` USD / 1M."""
    # USD/1M tokens * 1e9 nano/USD / 1e6 tokens = rate * 1000 nano per token.
    return _CONTEXT.multiply(Decimal(tokens), rate_per_million.scaleb(3))


def pico_to_nanos(pico: int) -> int:
    """Integer pico-USD (1e-12) to whole nano-USD, rounded up."""
    return -(-pico // 1000)


def ceil_nanos(exact: Decimal) -> int:
    """Round an exact nano-USD amount up to a whole nano-dollar."""
    return int(exact.to_integral_value(rounding=decimal.ROUND_CEILING))


def affordable_output(left_nanos: int, input_pico: int, pico_per_output: int | None) -> int | None:
    """How many output tokens ``left_nanos`` pays for after an input costing ``input_pico``.

    None when output is free (no rate, or a zero rate): the amount does not bound it. Never
    negative: an input that alone costs more than what is left affords 0 output tokens.
    Limits and allowances both bound a call's output with this.
    """
    if not pico_per_output:
        return None
    return max(left_nanos * 1000 - input_pico, 0) // pico_per_output
