"""How numbers and counts read in everything agentbudget prints (CLI, demo, pytest)."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["plural", "usd_rate"]


def plural(count: int, word: str) -> str:
    """``1 LLM call``, ``2 LLM calls``, ``12,000 tokens``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def usd_rate(amount: Decimal | None) -> str:
    """An amount exactly, with at least two decimals: ``2.50``, ``0.075``, ``18.75``; ``-``
    for None."""
    if amount is None:
        return "-"
    whole, _, fraction = format(amount.normalize(), "f").partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"
