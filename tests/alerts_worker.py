"""A separate OS process observing runs with ``Alerts`` against a shared store.

Usage: python alerts_worker.py STORE_URL PREFIX NOW REPORTS COST GO_FILE
Prints ``ready``, waits until GO_FILE exists (so every process observes at once), then
observes REPORTS runs of COST USD each at the fixed time NOW and prints every alert it
delivered as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal

import agentbudget as ab


def main() -> None:
    url, prefix, now, reports, cost, go = sys.argv[1:7]
    delivered: list[ab.Alert] = []
    alerts = ab.Alerts(
        store=url,
        prefix=prefix,
        clock=lambda: float(now),
        run_cost_usd=None,
        user_share=None,
        on_alert=delivered.append,
        log=False,
    )
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go):  # a start barrier, so the processes really overlap
        if time.monotonic() > deadline:
            raise SystemExit("no go file")
        time.sleep(0.005)
    for n in range(int(reports)):
        report = ab.RunReport(
            run_id=f"{os.getpid()}-{n}",
            user=f"user-{n % 3}",
            agent="worker",
            started_at=datetime.now(timezone.utc),
            cost_usd=Decimal(cost),
        )
        alerts.observe(report)
    alerts.close()
    for alert in delivered:
        print(json.dumps(alert.to_dict()), flush=True)


if __name__ == "__main__":
    main()
