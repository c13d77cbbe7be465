"""The ``CostSink`` protocols and the sinks that need nothing: logging and JSONL."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..report import RunReport

__all__ = ["BatchCostSink", "CostSink", "JsonlSink", "LogSink"]


@runtime_checkable
class CostSink(Protocol):
    """Receives the report of every governed run, tripped and failed ones included.

    ``record`` may also be ``async def``: the ``SinkDispatcher`` awaits it on its own loop.
    """

    def record(self, report: RunReport) -> None: ...


@runtime_checkable
class BatchCostSink(Protocol):
    """A sink that takes several reports at once (one transaction, one write).

    The ``SinkDispatcher`` prefers ``record_batch`` to ``record`` when a sink has both;
    a batch that raises is retried whole, so it must land all or nothing.
    """

    def record_batch(self, reports: Sequence[RunReport]) -> None: ...


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
    """Appends each report as one JSON line (``RunReport.model_validate_json`` reads it back).

    Several processes may append to the same file: the file is opened with ``O_APPEND``
    and each report (``record``) or batch (``record_batch``) is one ``write``, which the
    kernel appends whole, so lines of different writers never interleave (on a local
    file system; NFS does not honour ``O_APPEND``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, report: RunReport) -> None:
        self._append((report.model_dump_json() + "\n").encode())

    def record_batch(self, reports: Sequence[RunReport]) -> None:
        """Append every report of ``reports`` with one open and one write."""
        if reports:
            self._append("".join(r.model_dump_json() + "\n" for r in reports).encode())

    def _append(self, data: bytes) -> None:
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                view = memoryview(data)
                while view:  # a regular file takes the whole write unless the disk is full
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

    def read(self) -> list[RunReport]:
        """Every report written so far."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [RunReport.model_validate_json(line) for line in f if line.strip()]
