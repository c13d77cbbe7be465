"""The ``agentbudget`` command line: ``prices``, ``estimate``, ``spend``, ``report``, ``plan``,
``route-eval``, ``demo``.

Misuse (a bad argument, an unknown model, an unreadable price file, a module that does
not import) prints one line to stderr and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NoReturn

from . import __version__
from ._format import usd_rate
from .errors import AgentBudgetError, ConfigurationError
from .money import nanos_to_usd
from .pricing import ModelPrice, PriceTable
from .sinks.ledger._common import GROUPS

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(text: str) -> int:
    """A whole number of tokens, 0 or more (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _matches(pattern: str, names: Sequence[str]) -> bool:
    pattern = pattern.lower()
    if any(ch in pattern for ch in "*?["):
        return any(fnmatch.fnmatch(name, pattern) for name in names)
    return any(pattern in name for name in names)


def _table(args: argparse.Namespace) -> PriceTable:
    """The price file given with ``--prices``, or the bundled table."""
    return PriceTable.from_file(args.prices) if args.prices else PriceTable.default()


def cmd_prices(args: argparse.Namespace) -> int:
    table = _table(args)
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
        tiers = ", ".join(
            f">{t.above_input_tokens:,}: {usd_rate(t.input)}/{usd_rate(t.output)}" for t in p.tiers
        )
        print(
            f"{name:<24} {usd_rate(p.input):>8} {usd_rate(p.cached_input):>8} "
            f"{usd_rate(p.cache_write_5m):>8} {usd_rate(p.cache_write_1h):>8} "
            f"{usd_rate(p.output):>8} {_tokens(p.max_output_tokens):>8}  {tiers}".rstrip()
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

    table = _table(args)
    price = table.get(args.model)  # an unknown model fails before reading stdin
    text = args.text if args.text is not None else sys.stdin.read()
    estimate = estimate_call_input(
        args.model, args.instructions, [{"role": "user", "content": text}]
    )
    output = (
        args.output_tokens if args.output_tokens is not None else (price.max_output_tokens or 0)
    )
    low = table.cost(args.model, TokenUsage(input_tokens=estimate.tokens))
    high = table.cost(args.model, TokenUsage(input_tokens=estimate.tokens, output_tokens=output))
    kind = "approximate (no public tokenizer)" if estimate.approximate else estimate.encoding
    print(f"model:         {args.model} (priced as {table.resolve(args.model)})")
    print(f"input tokens:  {estimate.tokens:,} ({kind})")
    print(f"input cost:    ${low}")
    print(f"worst case:    ${high} with {output:,} output tokens")
    return 0


def _load_budgets(spec: str) -> Any:
    """The ``Budgets`` named by ``module:attribute`` (attribute ``budgets`` when omitted)."""
    return _load_object(spec, option="--budgets", default="budgets")


def _load_object(spec: str, *, option: str, default: str) -> Any:
    """The object named by ``module:attribute`` (attribute ``default`` when omitted).

    The current directory is searched first, as ``python -m`` does: the console script
    alone would not find ``myapp.py`` next to the user.
    """
    import importlib

    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: report whatever stops it importing
        raise ConfigurationError(
            f"{option} {spec}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        return getattr(module, attribute or default)
    except AttributeError:
        raise ConfigurationError(
            f"{option} {spec}: module {module_name!r} has no attribute {attribute or default!r}"
        ) from None


def cmd_spend(args: argparse.Namespace) -> int:
    import asyncio

    from .budgets import Budgets, parse_allowance

    if args.budgets:
        budgets = _load_budgets(args.budgets)
        if not isinstance(budgets, Budgets):
            raise ConfigurationError(
                f"--budgets {args.budgets}: is a {type(budgets).__name__}, not an "
                "agentbudget.Budgets"
            )
    else:
        if not args.allowance:
            raise ConfigurationError(
                "give the allowances: --allowance user:day:tokens=50000 (repeatable) "
                "or --budgets module:attribute"
            )
        budgets = Budgets(
            store=args.store, allowances=[parse_allowance(a) for a in args.allowance], tz=args.tz
        )

    if not args.forecast and (args.ledger or args.hours is not None):
        raise ConfigurationError("--ledger and --hours go with --forecast")
    ledger = None
    if args.forecast and args.ledger:
        from .reporting import open_ledger

        ledger = open_ledger(args.ledger, schema=args.schema)

    async def rows() -> list[Any]:
        try:
            if args.forecast:
                return await budgets.forecast(
                    user=args.user, team=args.team, ledger=ledger, hours=args.hours or 6
                )
            return await budgets.spend(user=args.user, team=args.team)
        finally:
            await budgets.close()
            if ledger is not None and hasattr(ledger, "close"):
                ledger.close()

    found = asyncio.run(rows())
    if not found:
        print(
            "no allowance applies: give --user or --team for per-user/per-team ones",
            file=sys.stderr,
        )
        return 1
    if args.forecast:
        _print_forecasts(found)
        return 0
    print(
        f"{'allowance':<16} {'subject':<20} {'window':<20} {'unit':<6} {'limit':>14} "
        f"{'spent':>14} {'reserved':>14} {'remaining':>14}"
    )
    for row in found:
        amounts = [row.limit, row.spent, row.reserved, row.remaining]
        unit = "tokens"
        values = [f"{v:,}" for v in amounts]
        if row.unit == "nanousd":
            unit = "USD"
            values = [usd_rate(nanos_to_usd(v)) for v in amounts]
        subject = row.subject if len(row.subject) <= 20 else row.subject[:17] + "..."
        print(
            f"{row.allowance.label:<16} {subject:<20} {row.window:<20} {unit:<6} "
            + " ".join(f"{v:>14}" for v in values)
        )
    return 0


def _print_forecasts(forecasts: Sequence[Any]) -> None:
    """``spend --forecast``: each window's spend, rate, projection and exhaustion."""

    def amount(value: int | Decimal | None, unit: str) -> str:
        if value is None:
            return "-"
        if unit == "nanousd":
            return usd_rate(nanos_to_usd(int(value)) if isinstance(value, int) else value / 10**9)
        return f"{value:,}"

    print(
        f"{'allowance':<16} {'subject':<20} {'window':<12} {'unit':<6} {'limit':>12} "
        f"{'used':>12} {'rate/hour':>12} {'projected':>12}  exhausted"
    )
    for f in forecasts:
        unit = "USD" if f.unit == "nanousd" else "tokens"
        subject = f.subject if len(f.subject) <= 20 else f.subject[:17] + "..."
        if f.exhausts_at is None:
            when = "not this window" if f.window_end is not None else "never at this rate"
        else:
            when = f"{f.exhausts_at:%Y-%m-%d %H:%M} UTC (in {f.hours_left}h)"
        print(
            f"{f.allowance:<16} {subject:<20} {f.window:<12} {unit:<6} "
            f"{amount(f.limit, f.unit):>12} {amount(f.spent + f.reserved, f.unit):>12} "
            f"{amount(f.rate_per_hour, f.unit):>12} {amount(f.projected, f.unit):>12}  {when}"
        )
    for basis in dict.fromkeys(f.basis for f in forecasts):
        labels = ", ".join(dict.fromkeys(f.allowance for f in forecasts if f.basis == basis))
        print(f"rate of {labels}: {basis}")


def cmd_plan(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from .planning import DEFAULT_MODELS, measured_plan, parse_mix, parse_ratio, plan_budget
    from .reporting import (
        open_ledger,
        parse_moment,
        plan_to_json,
        render_measured_plan,
        render_plan,
    )
    from .sinks.ledger import SQLiteLedger

    ratio = parse_ratio(args.io_ratio)
    mix = parse_mix(args.mix) if args.mix else None
    measured = plan = None
    if args.ledger:
        now = datetime.now(timezone.utc)
        until = parse_moment(args.until, now=now, option="--until") if args.until else now
        since = parse_moment(args.since, now=until, option="--since")
        ledger = open_ledger(args.ledger, schema=args.schema)
        try:
            measured = measured_plan(
                ledger,
                args.budget,
                period=args.period,
                since=since,
                until=until,
                users=args.users,
                margin=args.margin,
            )
        finally:
            if isinstance(ledger, SQLiteLedger):
                ledger.close()
    if not args.ledger or args.model:
        plan = plan_budget(
            args.budget,
            period=args.period,
            models=args.model or DEFAULT_MODELS,
            prices=_table(args),
            ratio=ratio,
            cached_share=args.cached_share,
            run_tokens=args.run_tokens,
            users=args.users,
            mix=mix,
        )
    if args.format == "json":
        print(plan_to_json(plan, measured))
        return 0
    if plan is not None:
        render_plan(plan)
    if measured is not None:
        render_measured_plan(measured)
    return 0


def _positive(text: str) -> int:
    """A whole number, 1 or more (an argparse ``type``)."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from rich.console import Console

    from .reporting import open_ledger, parse_moment, render_table, spend_report, to_csv, to_json
    from .sinks.ledger import SQLiteLedger

    now = datetime.now(timezone.utc)
    since = parse_moment(args.since, now=now, option="--since") if args.since else None
    until = parse_moment(args.until, now=now, option="--until") if args.until else None
    if since is not None and until is not None and since >= until:
        raise ConfigurationError(
            f"--since ({since:%Y-%m-%d %H:%M} UTC) must be before --until "
            f"({until:%Y-%m-%d %H:%M} UTC)"
        )
    ledger = open_ledger(args.ledger, schema=args.schema)
    try:
        report = spend_report(
            ledger,
            by=args.by,
            since=since,
            until=until,
            top=args.top,
            details=args.html is not None,
            progress=Console(stderr=True),
            now=now,
        )
    finally:
        if isinstance(ledger, SQLiteLedger):
            ledger.close()
    if args.html is not None:
        from .html_report import write_html

        write_html(report, args.html)
    if args.format == "json":
        print(to_json(report))
    elif args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        render_table(report)
    if args.html is not None:
        print(f"agentbudget report: wrote {args.html}", file=sys.stderr)
    return 0


def cmd_route_eval(args: argparse.Namespace) -> int:
    from .routing import HeuristicRouter, load_labelled
    from .routing.evaluate import evaluate_sync, shipped_set

    if args.router:
        router = _load_object(args.router, option="--router", default="router")
        if not callable(getattr(router, "route", None)):
            raise ConfigurationError(f"--router {args.router}: {router!r} has no route() method")
    else:
        router = HeuristicRouter()
    rows = load_labelled(shipped_set(args.file))
    evaluation = evaluate_sync(
        router, rows, prices=_table(args), strong=args.strong, cheap=args.cheap
    )
    print(f"router: {router!r}")
    print(evaluation.render())
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo()
    return 0


def _prices_option(parser: argparse.ArgumentParser, *names: str) -> None:
    parser.add_argument(
        *names,
        dest="prices",
        metavar="FILE",
        help="a price file with the bundled schema, used instead of the bundled table",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="agentbudget", description="Cost controls for the OpenAI Agents SDK.")
    parser.add_argument(
        "--version", action="version", version=f"agentbudget {__version__} (agentbudget-sdk)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("prices", help="show the rates of models matching PATTERN")
    p.add_argument("pattern", nargs="?", help="substring, glob or alias (e.g. gpt-4o, 'claude*')")
    _prices_option(p, "--prices", "--file")
    p.add_argument("-v", "--verbose", action="store_true", help="show aliases and sources")
    p.add_argument(
        "--check", action="store_true", help="list differences from genai-prices (offline)"
    )
    p.set_defaults(func=cmd_prices)
    e = sub.add_parser("estimate", help="estimate the tokens and cost of one call")
    e.add_argument("--model", required=True)
    e.add_argument("--instructions", default=None, help="the system prompt")
    e.add_argument(
        "--output-tokens",
        type=_count,
        default=None,
        metavar="N",
        help="output bound of the worst case (default: the model's maximum output)",
    )
    _prices_option(e, "--prices")
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
    s.add_argument(
        "--budgets",
        metavar="MODULE:ATTR",
        help="your Budgets object instead (the module is looked up in the current directory)",
    )
    s.add_argument("--tz", default="UTC", help="time zone of calendar windows")
    who = s.add_mutually_exclusive_group()
    who.add_argument("--user")
    who.add_argument("--team")
    s.add_argument(
        "--forecast",
        action="store_true",
        help="project each window to its end and say when its allowance runs out",
    )
    s.add_argument(
        "--ledger", metavar="LEDGER", help="with --forecast: measure the rate from this ledger"
    )
    s.add_argument(
        "--hours",
        type=_positive,
        metavar="N",
        help="with --forecast and --ledger: the rate of the last N hours (default 6)",
    )
    s.add_argument("--schema", help="the PostgreSQL schema of the ledger's tables")
    s.set_defaults(func=cmd_spend)
    pl = sub.add_parser("plan", help="what a budget buys per model, mix, run and user")
    pl.add_argument("--budget", required=True, metavar="USD", help="the budget, e.g. 100")
    pl.add_argument("--period", choices=("day", "week", "month"), default="month")
    pl.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="a model to plan (repeatable; default gpt-4o-mini and gpt-4o)",
    )
    pl.add_argument(
        "--mix",
        metavar="NAME:SHARE,...",
        help="a routed mix, e.g. simple:0.8,complex:0.2 (simple: the cheapest model, complex: "
        "the dearest, or model names)",
    )
    pl.add_argument(
        "--cached-share", default="0", metavar="X", help="share of input read from the cache"
    )
    pl.add_argument(
        "--io-ratio", default="3:1", metavar="IN:OUT", help="input to output tokens (3:1)"
    )
    pl.add_argument(
        "--run-tokens",
        type=_positive,
        default=4000,
        metavar="N",
        help="tokens of a typical run (default 4000)",
    )
    pl.add_argument("--users", type=_positive, metavar="N", help="daily active users to plan for")
    pl.add_argument(
        "--ledger", metavar="LEDGER", help="measure costs and users from this ledger instead"
    )
    pl.add_argument(
        "--since", default="7d", metavar="WHEN", help="ledger window start (default 7d)"
    )
    pl.add_argument("--until", metavar="WHEN", help="ledger window end (default now)")
    pl.add_argument(
        "--margin", default="0.20", metavar="X", help="share of the budget the allowance keeps"
    )
    pl.add_argument("--schema", help="the PostgreSQL schema of the ledger's tables")
    pl.add_argument("--format", choices=("table", "json"), default="table")
    _prices_option(pl, "--prices")
    pl.set_defaults(func=cmd_plan)
    r = sub.add_parser("report", help="spend per user, team, agent, model or day from a ledger")
    r.add_argument(
        "ledger", metavar="LEDGER", help="a SQLite file, sqlite:///path or postgresql://..."
    )
    r.add_argument("--by", choices=GROUPS, default="user", help="group rows by (default: user)")
    r.add_argument("--since", metavar="WHEN", help="a duration back (24h, 7d, 30d) or an ISO date")
    r.add_argument("--until", metavar="WHEN", help="end of the window (excluded), as --since")
    r.add_argument("--top", type=_positive, metavar="N", help="only the N biggest rows")
    r.add_argument("--format", choices=("table", "csv", "json"), default="table")
    r.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    r.add_argument("--schema", help="the PostgreSQL schema of the ledger's tables")
    r.set_defaults(func=cmd_report)
    v = sub.add_parser(
        "route-eval", help="evaluate a router on labelled requests (JSONL: text, label)"
    )
    v.add_argument(
        "file",
        metavar="FILE.jsonl",
        help="labelled requests; 'shipped' or 'holdout' for the sets agentbudget ships",
    )
    v.add_argument(
        "--router",
        metavar="MODULE:ATTR",
        help="your router instead of HeuristicRouter() (attribute 'router' when omitted)",
    )
    v.add_argument(
        "--strong", help="the strong model (default: the router's strongest tier, or gpt-4o)"
    )
    v.add_argument("--cheap", default="gpt-4o-mini", help="the oracle's cheap model")
    _prices_option(v, "--prices")
    v.set_defaults(func=cmd_route_eval)
    d = sub.add_parser("demo", help="run the offline demo")
    d.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `agentbudget prices | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (AgentBudgetError, ValueError, OSError) as exc:
        # Bad input, an unknown model, an unreadable file, a store that cannot be reached.
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"agentbudget {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
