"""Synthetic ledgers for the report tests, and the ledger behind docs/img/report.png.

``PYTHONPATH=tests python tests/helpers/report_support.py spend.db`` writes two weeks of
runs (five users, three models, some tripped, a cache hit) to a SQLite ledger; then
``agentbudget report spend.db --html report.html``.
"""

from __future__ import annotations

import random
import struct
import sys
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from agentbudget.report import LLMCallCost, RunReport

START = datetime(2026, 11, 16, 8, 0, tzinfo=timezone.utc)
# USD per 1M input / output tokens
RATES = {
    "gpt-4o": (Decimal("2.50"), Decimal("10")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "claude-sonnet-4-5": (Decimal("3"), Decimal("15")),
}
USERS = ("alice", "bob", "carol", "dave", "erin")
AGENTS = ("support", "researcher", "billing")


def call(model: str, input_tokens: int, output_tokens: int, agent: str = "support") -> LLMCallCost:
    rate_in, rate_out = RATES[model]
    cost = (input_tokens * rate_in + output_tokens * rate_out) / 1_000_000
    return LLMCallCost(
        agent=agent,
        model=model,
        price_key=model,
        price_source="bundled 2026.11.29",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost.quantize(Decimal("0.000000001")),
    )


def run(
    run_id: str,
    calls: tuple[LLMCallCost, ...],
    *,
    user: str | None,
    at: datetime,
    team: str | None = "t-1",
    agent: str = "support",
    **fields: object,
) -> RunReport:
    inp = sum(c.input_tokens for c in calls)
    out = sum(c.output_tokens for c in calls)
    return RunReport(
        run_id=run_id,
        user=user,
        team=team,
        agent=agent,
        calls=calls,
        input_tokens=inp,
        output_tokens=out,
        total_tokens=inp + out,
        cost_usd=sum((c.cost_usd or Decimal(0) for c in calls), Decimal(0)),
        started_at=at,
        duration_s=2.5,
        **fields,  # type: ignore[arg-type]
    )


def two_weeks(seed: int = 12) -> list[RunReport]:
    """About 300 runs over 14 days: spend grows, bob is busy on Nov 26, some runs trip."""
    rng = random.Random(seed)
    reports: list[RunReport] = []
    for day in range(14):
        for n in range(12 + day + (25 if day == 10 else 0)):
            user = "bob" if day == 10 and n >= 12 else rng.choice(USERS)
            agent = rng.choice(AGENTS)
            calls = tuple(
                call(
                    rng.choice(("gpt-4o", "gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5")),
                    rng.randint(400, 6_000),
                    rng.randint(50, 1_200),
                    agent=agent,
                )
                for _ in range(rng.randint(1, 6))
            )
            at = START + timedelta(days=day, minutes=37 * n)
            tripped = rng.random() < 0.06
            reports.append(
                run(
                    f"run-{day:02d}-{n:03d}",
                    calls,
                    user=user,
                    team="research" if agent == "researcher" else "support",
                    agent=agent,
                    at=at,
                    tool_calls=len(calls) - 1,
                    outcome="tripped" if tripped else "completed",
                    tripped_limit=rng.choice(("max_tool_calls", "max_cost_usd"))
                    if tripped
                    else None,
                )
            )
    reports.append(
        run(
            "run-cached",
            (),
            user="alice",
            at=START + timedelta(days=13, hours=2),
            cache_hit=True,
            saved_usd=Decimal("0.012500000"),
        )
    )
    return reports


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and the RGB(A) pixels of an 8-bit, non-interlaced PNG (zlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        previous = line
    pixels = [tuple(row[i : i + 3]) for row in rows for i in range(0, stride, bpp)]
    return width, height, pixels


if __name__ == "__main__":
    from agentbudget.sinks.ledger import SQLiteLedger

    ledger = SQLiteLedger(sys.argv[1])
    ledger.record_batch(two_weeks())
    ledger.close()
