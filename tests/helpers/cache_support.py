"""Shared constants of the response cache tests."""

from __future__ import annotations

import os

# The shared test server (db 15); AGENTBUDGET_TEST_REDIS_URL points the tests elsewhere.
REDIS_URL = os.environ.get("AGENTBUDGET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
