"""Ledgers: every run and LLM call in SQLite or PostgreSQL, with a read API for reports."""

from __future__ import annotations

from ._common import SCHEMA_VERSION, SpendRow
from .postgres import PostgresLedger
from .sqlite import SQLiteLedger

__all__ = ["SCHEMA_VERSION", "PostgresLedger", "SQLiteLedger", "SpendRow"]
