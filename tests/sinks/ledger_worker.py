"""One writer process of the SQLite ledger concurrency test.

Usage: ledger_worker.py DB PREFIX COUNT SHARED START_AT
Writes COUNT reports with run ids PREFIX-0.. one transaction each, then the SHARED
reports every worker writes (shared-0..), starting at the wall-clock time START_AT.
"""

from __future__ import annotations

import sys
import time

from helpers.ledger_support import call, run

from agentbudget.sinks.ledger import SQLiteLedger


def main() -> None:
    path, prefix, count, shared, start_at = sys.argv[1:]
    ledger = SQLiteLedger(path)
    reports = [
        run(f"{prefix}-{i}", (call("gpt-4o", cost="0.000001000"),), user=prefix)
        for i in range(int(count))
    ]
    common = [run(f"shared-{i}", (call("gpt-4o-mini"),)) for i in range(int(shared))]
    time.sleep(max(0.0, float(start_at) - time.time()))
    for report in reports:
        ledger.record(report)
    ledger.record_batch(common)
    ledger.close()


if __name__ == "__main__":
    main()
