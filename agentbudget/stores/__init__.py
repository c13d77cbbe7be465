"""Budget stores: atomic reserve-then-settle counters, chosen by URL.

``memory://`` (one process), ``sqlite:///path.db`` (the processes of one machine) and
``redis://`` / ``rediss://`` (many machines) share one contract, :class:`BudgetStore`,
and pass one contract test suite. :class:`JournalingStore` adds fail-open behaviour.
"""

from .base import (
    MAX_UNITS,
    BaseStore,
    BudgetStore,
    Charge,
    CounterState,
    LeaseRenewer,
    ReservationNotFound,
    ReserveResult,
    SpendRecorder,
    StoreConfigurationError,
)
from .journal import JournalingStore
from .memory import MemoryStore
from .redis import RedisStore
from .registry import known_schemes, register_store, store_from_url
from .sqlite import SQLiteStore

__all__ = [
    "MAX_UNITS",
    "BaseStore",
    "BudgetStore",
    "Charge",
    "CounterState",
    "JournalingStore",
    "LeaseRenewer",
    "MemoryStore",
    "RedisStore",
    "ReservationNotFound",
    "ReserveResult",
    "SQLiteStore",
    "SpendRecorder",
    "StoreConfigurationError",
    "known_schemes",
    "register_store",
    "store_from_url",
]
