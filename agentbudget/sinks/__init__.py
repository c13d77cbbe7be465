"""Where run reports go: the ``CostSink`` protocol, the log and JSONL sinks, the SQLite and
PostgreSQL ledgers, OpenTelemetry metrics, and the dispatcher that delivers reports and
events to them off the call path."""

from __future__ import annotations

from .basic import BatchCostSink, CostSink, JsonlSink, LogSink
from .dispatch import ChannelStats, EventDispatcher, SinkDispatcher
from .ledger import PostgresLedger, SpendRow, SQLiteLedger
from .otel import OTelSink

__all__ = [
    "BatchCostSink",
    "ChannelStats",
    "CostSink",
    "EventDispatcher",
    "JsonlSink",
    "LogSink",
    "OTelSink",
    "PostgresLedger",
    "SQLiteLedger",
    "SinkDispatcher",
    "SpendRow",
]
