"""The ``agentbudget`` command line: ``prices``, ``estimate``, ``spend``, ``demo``."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import Sequence
from typing import Any

from .errors import AgentBudgetError
from .money import nanos_to_usd
from .pricing import ModelPrice, PriceTable

__all__ = ["main"]


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value}"


def _matches(pattern: str, names: Sequence[str]) -> bool:
    pattern = pattern.lower()
    if any(ch in pattern for ch in "*?["):
        return any(fnmatch.fnmatch(name, pattern) for name in names)
    return any(pattern in name for name in names)


def cmd_prices(args: argparse.Namespace) -> int:
    table = PriceTable.from_file(args.file) if args.file else PriceTable.default()
    if args.check:
        return _check_prices(table)
    rows: list[tuple[str, ModelPrice]] = []
    for name, price in sorted(table.models().items()):
        if args.pattern is None or _matches(args.pattern, [name, *table.aliases_of(name)]):
            rows.append((name, price))
    if args.pattern and args.pattern.lower() in table:  # a prefixed name resolves too
        key, price = table.lookup(args.pattern)
        if all(name != key for name, _ in rows):
            rows.append((key, price))
    if not rows:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(f"USD per 1M tokens - price table {table.version} (effective {table.effective_date})")
    header = (
        f"{'model':<24} {'input':>8} {'cached':>8} {'write5m':>8} {'write1h':>8} "
        f"{'output':>8} {'max out':>8}  tiers"
    )
    print(header)
    print("-" * len(header))
    for name, p in rows:
        tiers = ", ".join(f">{t.above_input_tokens:,}: {t.input}/{t.output}" for t in p.tiers)
        print(
            f"{name:<24} {_fmt(p.input):>8} {_fmt(p.cached_input):>8} "
            f"{_fmt(p.cache_write_5m):>8} {_fmt(p.cache_write_1h):>8} {_fmt(p.output):>8} "
            f"{_fmt(p.max_output_tokens):>8}  {tiers}"
        )
        if args.verbose:
            aliases = table.aliases_of(name)
            if aliases:
                print(f"{'':<24} aliases: {', '.join(aliases)}")
            print(f"{'':<24} source: {p.source}")
    return 0


def _check_prices(table: PriceTable) -> int:
    """``prices --check``: every difference from genai-prices; 1 when one is not reviewed."""
    from .price_sources import GenaiPrices, drift, format_drift

    differences = drift(table)
    print(f"price table {table.version or table.source} against {GenaiPrices().label} (offline)")
    for line in format_drift(differences):
        print(line)
    new = sum(1 for d in differences if d.reviewed is None)
    print(f"{len(differences)} differences, {new} not reviewed")
    return 1 if new else 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from .pricing import TokenUsage
    from .tokens import estimate_call_input

    text = args.text if args.text is not None else sys.stdin.read()
    table = PriceTable.default()
    estimate = estimate_call_input(
        args.model, args.instructions, [{"role": "user", "content": text}]
    )
    price = table.get(args.model)
    output = (
        args.output_tokens if args.output_tokens is not None else (price.max_output_tokens or 0)
    )
    low = table.cost(args.model, TokenUsage(input_tokens=estimate.tokens))
    high = table.cost(args.model, TokenUsage(input_tokens=estimate.tokens, output_tokens=output))
    kind = "approximate (no public tokenizer)" if estimate.approximate else estimate.encoding
    print(f"model:         {args.model} (priced as {table.resolve(args.model)})")
    print(f"input tokens:  {estimate.tokens} ({kind})")
    print(f"input cost:    ${low}")
    print(f"worst case:    ${high} with {output} output tokens")
    return 0


def cmd_spend(args: argparse.Namespace) -> int:
    import asyncio
    import importlib

    from .budgets import Budgets, parse_allowance

    if args.budgets:
        module_name, _, attribute = args.budgets.partition(":")
        budgets = getattr(importlib.import_module(module_name), attribute or "budgets")
        if not isinstance(budgets, Budgets):
            print(f"{args.budgets} is not an agentbudget.Budgets", file=sys.stderr)
            return 2
    else:
        if not args.allowance:
            print(
                "give the allowances: --allowance user:day:tokens=50000 (repeatable) "
                "or --budgets module:attribute",
                file=sys.stderr,
            )
            return 2
        budgets = Budgets(
            store=args.store, allowances=[parse_allowance(a) for a in args.allowance], tz=args.tz
        )

    async def rows() -> list[Any]:
        try:
            return await budgets.spend(user=args.user, team=args.team)
        finally:
            await budgets.close()

    found = asyncio.run(rows())
    if not found:
        print(
            "no allowance applies: give --user or --team for per-user/per-team ones",
            file=sys.stderr,
        )
        return 1
    print(
        f"{'allowance':<16} {'subject':<20} {'window':<20} {'unit':<6} {'limit':>14} "
        f"{'spent':>14} {'reserved':>14} {'remaining':>14}"
    )
    for row in found:
        values = [row.limit, row.spent, row.reserved, row.remaining]
        unit = "tokens"
        if row.unit == "nanousd":
            unit = "USD"
            values = [f"{nanos_to_usd(v):f}" for v in values]
        subject = row.subject if len(row.subject) <= 20 else row.subject[:17] + "..."
        print(
            f"{row.allowance.label:<16} {subject:<20} {row.window:<20} {unit:<6} "
            + " ".join(f"{v!s:>14}" for v in values)
        )
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentbudget", description="Cost controls for the OpenAI Agents SDK."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prices", help="show the rates of models matching PATTERN")
    p.add_argument("pattern", nargs="?", help="substring, glob or alias (e.g. gpt-4o, 'claude*')")
    p.add_argument("--file", help="a price file with the bundled schema")
    p.add_argument("-v", "--verbose", action="store_true", help="show aliases and sources")
    p.add_argument(
        "--check", action="store_true", help="list differences from genai-prices (offline)"
    )
    p.set_defaults(func=cmd_prices)
    e = sub.add_parser("estimate", help="estimate the tokens and cost of one call")
    e.add_argument("--model", required=True)
    e.add_argument("--instructions", default=None)
    e.add_argument("--output-tokens", type=int, default=None)
    e.add_argument("text", nargs="?", help="the input (stdin when omitted)")
    e.set_defaults(func=cmd_estimate)
    s = sub.add_parser("spend", help="spent, reserved and remaining per budget window")
    s.add_argument(
        "--store", default="memory://", help="store URL (sqlite:///spend.db, redis://...)"
    )
    s.add_argument(
        "--allowance",
        action="append",
        default=[],
        help="per:window:unit=amount, e.g. user:day:tokens=50000 (repeatable)",
    )
    s.add_argument("--budgets", help="module:attribute of your Budgets object instead")
    s.add_argument("--tz", default="UTC", help="time zone of calendar windows")
    who = s.add_mutually_exclusive_group()
    who.add_argument("--user")
    who.add_argument("--team")
    s.set_defaults(func=cmd_spend)
    d = sub.add_parser("demo", help="run the offline demo")
    d.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AgentBudgetError as exc:
        print(f"agentbudget: {exc}", file=sys.stderr)
        return 2
