"""Choosing a store by URL, and the public names of ``agentbudget.stores``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentbudget.stores as stores
from agentbudget.errors import ConfigurationError
from agentbudget.stores import (
    Charge,
    CounterState,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    known_schemes,
    register_store,
    store_from_url,
)
from agentbudget.stores import registry as registry_module

DOCUMENTED = {
    "MAX_UNITS", "BaseStore", "BudgetStore", "Charge", "CounterState", "JournalingStore",
    "LeaseRenewer", "MemoryStore", "RedisStore", "ReservationNotFound", "ReserveResult",
    "SQLiteStore", "SpendRecorder", "StoreConfigurationError", "known_schemes",
    "register_store", "store_from_url",
}  # fmt: skip


def test_all_is_exactly_the_documented_names() -> None:
    assert set(stores.__all__) == DOCUMENTED
    assert all(hasattr(stores, name) for name in stores.__all__)


@pytest.fixture
def restore_registry() -> Iterator[None]:
    saved = dict(registry_module._SCHEMES)
    yield
    registry_module._SCHEMES.clear()
    registry_module._SCHEMES.update(saved)


async def test_each_scheme_builds_its_store(tmp_path: Path) -> None:
    assert type(store_from_url("memory://")) is MemoryStore
    sqlite = store_from_url(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == f"{tmp_path}/x.db"
    assert type(store_from_url("redis://127.0.0.1:6379/0")) is RedisStore
    tls = store_from_url("rediss://127.0.0.1:6380/0")
    assert type(tls) is RedisStore and tls.url == "rediss://127.0.0.1:6380/0"
    await sqlite.close()
    assert known_schemes() == ["memory", "redis", "rediss", "sqlite"]


async def test_sqlite_urls_are_relative_absolute_or_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = store_from_url("sqlite:///spend.db")
    assert isinstance(relative, SQLiteStore) and relative.path == "spend.db"
    await relative.reserve([Charge("k", 10, 1)], reservation_id="r", lease_s=5)
    assert (tmp_path / "spend.db").exists()
    await relative.close()
    private = store_from_url("sqlite:///:memory:")
    await private.reserve([Charge("k", 10, 4)], reservation_id="r", lease_s=5)
    assert await private.state("k") == CounterState(0, 4)
    await private.close()


@pytest.mark.parametrize(
    "url",
    ["mongodb://x", "memcached://127.0.0.1", "spend.db", "", "sqlite://relative.db", "sqlite:///"],
)
def test_bad_urls_are_configuration_errors_that_say_what_to_use(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    message = str(caught.value)
    assert ("memory" in message and "sqlite" in message) or "sqlite:///" in message


def test_an_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="memory, redis, rediss, sqlite"):
        store_from_url("etcd://127.0.0.1")


def test_a_sqlite_file_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        store_from_url(f"sqlite:///{tmp_path}/nope/spend.db")


def test_unknown_options_are_configuration_errors_that_list_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="clock, grace_s, retention_s"):
        store_from_url("memory://", prefix="x")
    with pytest.raises(ConfigurationError, match="prefix"):
        store_from_url("redis://127.0.0.1/0", clock=lambda: 0.0)


def test_memory_url_must_be_bare() -> None:
    with pytest.raises(ConfigurationError):
        MemoryStore("memory://somewhere")


@pytest.mark.usefixtures("restore_registry")
async def test_register_store_adds_a_scheme() -> None:
    class Custom(MemoryStore):
        def __init__(self, url: str, *, flavour: str = "plain") -> None:
            super().__init__("memory://")
            self.url = url
            self.flavour = flavour

    register_store("custom+mem", Custom)
    store: Any = store_from_url("custom+mem://anything", flavour="spicy")
    assert isinstance(store, Custom) and store.flavour == "spicy"
    assert store.url == "custom+mem://anything"
    assert "custom+mem" in known_schemes()
    assert (await store.reserve([Charge("k", 1, 1)], reservation_id="r", lease_s=1)).ok


@pytest.mark.usefixtures("restore_registry")
@pytest.mark.parametrize("scheme", ["", "1abc", "a b", "ünï", "a/b"])
def test_register_store_rejects_bad_schemes(scheme: str) -> None:
    with pytest.raises(ConfigurationError):
        register_store(scheme, MemoryStore)
    with pytest.raises(ConfigurationError):
        register_store("fine", "not callable")  # type: ignore[arg-type]
