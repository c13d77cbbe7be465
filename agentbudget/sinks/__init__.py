"""Where run reports go: the ``CostSink`` protocol, logging and JSONL sinks, the SQLite and
PostgreSQL ledgers and OpenTelemetry metrics."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..report import RunReport
from .ledger import PostgresLedger, SpendRow, SQLiteLedger
from .otel import OTelSink

__all__ = [
    "CostSink",
    "JsonlSink",
    "LogSink",
    "OTelSink",
    "PostgresLedger",
    "SQLiteLedger",
    "SpendRow",
]


@runtime_checkable
class CostSink(Protocol):
    """Receives the report of every governed run, tripped and failed ones included."""

    def record(self, report: RunReport) -> None: ...


class LogSink:
    """Logs one line per run: ``agentbudget run <id> agent=... outcome=... cost_usd=...``.

    Args:
        logger: a logger or its name (default ``"agentbudget"``).
        level: the level of each line (default ``logging.INFO``). Python drops records
            below WARNING until logging is configured (``logging.basicConfig``), so
            configure logging or pass a higher level to see them.
    """

    def __init__(self, logger: str | logging.Logger = "agentbudget", level: int = logging.INFO):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def record(self, report: RunReport) -> None:
        self.logger.log(
            self.level,
            "agentbudget run %s agent=%s user=%s outcome=%s cost_usd=%s tokens=%d llm_calls=%d "
            "tool_calls=%d%s",
            report.run_id,
            report.agent,
            report.user,
            report.outcome,
            report.cost_usd,
            report.total_tokens,
            len(report.calls),
            report.tool_calls,
            f" tripped={report.tripped_limit}" if report.tripped_limit else "",
        )


class JsonlSink:
    """Appends each report as one JSON line (``RunReport.model_validate_json`` reads it back)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, report: RunReport) -> None:
        line = report.model_dump_json() + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)

    def read(self) -> list[RunReport]:
        """Every report written so far."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [RunReport.model_validate_json(line) for line in f if line.strip()]
