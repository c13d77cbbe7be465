"""The conformance suite drives the SDK's real OpenAI model classes over a fake server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stores"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stores_support import STORE_KINDS, Env, store_env


@pytest.fixture(params=STORE_KINDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Every store kind (Redis: skipped when unreachable, failing under CI=true)."""
    async for environment in store_env(request.param, tmp_path):
        yield environment
