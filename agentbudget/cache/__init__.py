"""The response cache: free answers for repeated questions, never across tenants.

``ResponseCache`` is one stage of the governed run pipeline (``pipeline.GovernedRun``):
its ``begin`` looks a run up and, on a hit, sets the run's replay; its ``finish`` stores a
completed run's answer. Stores are chosen by URL (``memory://``, ``sqlite:///``,
``redis://``); see docs/cache.md.
"""

from .key import Uncacheable, key_record
from .stage import CacheOptions, ResponseCache, cache_options
from .stores import (
    CacheStore,
    MemoryCacheStore,
    RedisCacheStore,
    SQLiteCacheStore,
    cache_store_from_url,
    known_cache_schemes,
    register_cache_store,
)

__all__ = [
    "CacheOptions",
    "CacheStore",
    "MemoryCacheStore",
    "RedisCacheStore",
    "ResponseCache",
    "SQLiteCacheStore",
    "Uncacheable",
    "cache_options",
    "cache_store_from_url",
    "key_record",
    "known_cache_schemes",
    "register_cache_store",
]
