"""SQLite: a wrong path or a file that is not a database is misconfiguration, not an outage."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbudget.errors import ConfigurationError, StoreUnavailable
from agentbudget.stores import (
    Charge,
    JournalingStore,
    SQLiteStore,
    StoreConfigurationError,
    store_from_url,
)


def test_a_directory_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        store_from_url(f"sqlite:///{tmp_path}")


async def test_a_file_that_is_not_a_database_is_a_configuration_error_even_failing_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    store = SQLiteStore(f"sqlite:///{path}")
    with pytest.raises(StoreConfigurationError, match="not a database") as caught:
        await store.reserve([Charge("k", 10, 1)], reservation_id="a", lease_s=60)
    assert not isinstance(caught.value, StoreUnavailable)
    journaling = JournalingStore(store, tmp_path / "j.jsonl")
    with pytest.raises(StoreConfigurationError):  # fail-open does not admit past it
        await journaling.reserve([Charge("k", 10, 1)], reservation_id="b", lease_s=60)
    with pytest.raises(StoreConfigurationError):
        await journaling.check()
    await store.close()
