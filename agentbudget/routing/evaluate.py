"""Offline evaluation of a router on labelled requests (``agentbudget route-eval``).

Each line of the JSONL file is ``{"text": ..., "label": "simple" | "complex"}``, with
optional ``input_tokens`` and ``output_tokens`` (default: the text's o200k_base tokens,
and 150 output tokens for a simple request, 600 for a complex one). The router routes
each request for a tool-less agent; a request counts as sent to the strong tier when its
route names the strong model (the router's ``strongest`` tier, else ``strong=``).

Costs are priced with the price table: the router's choices, an always-strong baseline,
and an oracle that sends simple requests to the cheap model and complex ones to the
strong model. A complex request the router sends below the strong tier is charged at its
model *and* at the strong model (the failed answer is redone), so misrouting hard work
never counts as a saving. ``captured`` is the router's savings over the oracle's savings
(both against always-strong).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents import Agent

from ..errors import ConfigurationError
from ..money import nanos_to_usd
from ..pricing import PriceTable
from ..tokens import count_text, get_encoding
from ..usage import TokenUsage
from .base import Router, RouteRequest

__all__ = ["DEFAULT_OUTPUT_TOKENS", "Evaluation", "LabelledRequest", "evaluate", "load_labelled"]

DEFAULT_OUTPUT_TOKENS = {"simple": 150, "complex": 600}
LABELS = ("simple", "complex")


@dataclasses.dataclass(frozen=True, slots=True)
class LabelledRequest:
    text: str
    label: str
    input_tokens: int
    output_tokens: int


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """What ``evaluate`` found."""

    total: int
    matrix: dict[tuple[str, str], int]
    """``(label, predicted)`` -> count; predicted is ``"simple"`` or ``"complex"``."""
    tiers: dict[str, int]
    """Requests per tier (or model, for a route without a tier)."""
    strong_model: str
    cheap_model: str
    cost_router: Decimal
    cost_strong: Decimal
    cost_oracle: Decimal

    @property
    def complex_to_strong(self) -> float:
        """The share of complex-labelled requests sent to the strong tier."""
        complex_total = self.matrix[("complex", "simple")] + self.matrix[("complex", "complex")]
        return self.matrix[("complex", "complex")] / complex_total if complex_total else 1.0

    @property
    def simple_to_cheap(self) -> float:
        simple_total = self.matrix[("simple", "simple")] + self.matrix[("simple", "complex")]
        return self.matrix[("simple", "simple")] / simple_total if simple_total else 1.0

    @property
    def captured(self) -> float:
        """The router's savings against always-strong over the oracle's."""
        oracle = self.cost_strong - self.cost_oracle
        if oracle <= 0:
            return 1.0
        return float((self.cost_strong - self.cost_router) / oracle)

    def render(self) -> str:
        """The evaluation as the text ``route-eval`` prints."""
        m = self.matrix
        lines = [
            f"requests: {self.total}",
            "",
            "confusion matrix (rows: label, columns: routed to)",
            f"{'':>10} {'cheap':>8} {'strong':>8}",
            f"{'simple':>10} {m[('simple', 'simple')]:>8} {m[('simple', 'complex')]:>8}",
            f"{'complex':>10} {m[('complex', 'simple')]:>8} {m[('complex', 'complex')]:>8}",
            "",
            "share per tier",
        ]
        for tier, count in sorted(self.tiers.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {tier:<20} {count:>5}  {count / self.total:6.1%}")
        saving_router = self.cost_strong - self.cost_router
        saving_oracle = self.cost_strong - self.cost_oracle
        lines += [
            "",
            f"complex -> strong:     {self.complex_to_strong:6.1%}",
            f"simple -> cheap:       {self.simple_to_cheap:6.1%}",
            "",
            f"cost, always {self.strong_model}: ${self.cost_strong}",
            f"cost, oracle ({self.cheap_model}/{self.strong_model}): ${self.cost_oracle}"
            f"  (saves ${saving_oracle})",
            f"cost, router: ${self.cost_router}  (saves ${saving_router})",
            f"oracle savings captured: {self.captured:6.1%}",
        ]
        return "\n".join(lines)


SHIPPED = {"shipped": "routing_eval.jsonl", "holdout": "routing_holdout.jsonl"}


def shipped_set(name: str) -> str:
    """The path of a set agentbudget ships (``"shipped"``: 314 labelled requests the
    defaults are tuned on; ``"holdout"``: 59 more), or ``name`` itself."""
    if name not in SHIPPED:
        return name
    return str(Path(__file__).parent.parent / "data" / SHIPPED[name])


def load_labelled(path: str | Path) -> list[LabelledRequest]:
    """The labelled requests of a JSONL file.

    Raises:
        ConfigurationError: a line is not a JSON object with a text and a known label.
    """
    encoding = get_encoding("o200k_base")
    rows: list[LabelledRequest] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise ConfigurationError(f"{path}:{number}: expected a JSON object")
            text, label = raw.get("text"), raw.get("label")
            if not isinstance(text, str) or not text:
                raise ConfigurationError(f"{path}:{number}: 'text' must be a non-empty string")
            if label not in LABELS:
                raise ConfigurationError(
                    f"{path}:{number}: 'label' must be 'simple' or 'complex', got {label!r}"
                )
            tokens_in = _tokens(raw, "input_tokens", path, number)
            tokens_out = _tokens(raw, "output_tokens", path, number)
            rows.append(
                LabelledRequest(
                    text=text,
                    label=label,
                    input_tokens=count_text(text, encoding) if tokens_in is None else tokens_in,
                    output_tokens=DEFAULT_OUTPUT_TOKENS[label]
                    if tokens_out is None
                    else tokens_out,
                )
            )
    if not rows:
        raise ConfigurationError(f"{path}: no labelled requests")
    return rows


def _tokens(raw: dict[str, Any], key: str, path: str | Path, number: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{path}:{number}: {key!r} must be a whole number >= 0")
    return value


async def evaluate(
    router: Router,
    rows: Sequence[LabelledRequest],
    *,
    prices: PriceTable | None = None,
    strong: str | None = None,
    cheap: str = "gpt-4o-mini",
) -> Evaluation:
    """Route every labelled request and price the choices (see the module docstring)."""
    prices = prices or PriceTable.default()
    strongest = getattr(router, "strongest", None)
    if strong is None:
        name = getattr(strongest, "model", None)
        if isinstance(name, str):
            strong = name
        elif name is not None:
            strong = getattr(name, "model", None) or "gpt-4o"
        else:
            strong = "gpt-4o"
    assert strong is not None
    strong_key = prices.resolve(strong)
    agent: Agent[Any] = Agent(name="route-eval")
    matrix: Counter[tuple[str, str]] = Counter({(a, b): 0 for a in LABELS for b in LABELS})
    tiers: Counter[str] = Counter()
    router_nanos = strong_nanos = oracle_nanos = 0
    for row in rows:
        route = await router.route(RouteRequest(input=row.text, agent=agent))
        model = route.model_name
        usage = TokenUsage(input_tokens=row.input_tokens, output_tokens=row.output_tokens)
        to_strong = model == strong or _resolved(prices, model) == strong_key
        matrix[(row.label, "complex" if to_strong else "simple")] += 1
        tiers[route.tier or model] += 1
        router_nanos += prices.cost_nanos(model, usage)
        if row.label == "complex" and not to_strong:
            # a complex request answered by a weaker model fails and is redone strong:
            # misrouting hard work costs more than it saves
            router_nanos += prices.cost_nanos(strong, usage)
        strong_nanos += prices.cost_nanos(strong, usage)
        oracle_nanos += prices.cost_nanos(strong if row.label == "complex" else cheap, usage)
    return Evaluation(
        total=len(rows),
        matrix=dict(matrix),
        tiers=dict(tiers),
        strong_model=strong,
        cheap_model=cheap,
        cost_router=nanos_to_usd(router_nanos),
        cost_strong=nanos_to_usd(strong_nanos),
        cost_oracle=nanos_to_usd(oracle_nanos),
    )


def evaluate_sync(router: Router, rows: Sequence[LabelledRequest], **kwargs: Any) -> Evaluation:
    """``evaluate`` from synchronous code (the CLI)."""
    return asyncio.run(evaluate(router, rows, **kwargs))


def _resolved(prices: PriceTable, model: str) -> str | None:
    try:
        return prices.resolve(model)
    except Exception:
        return None
