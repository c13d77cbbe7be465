"""``ResponseCache``: the response cache stage of the governed run pipeline."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Awaitable, Iterator
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from ..current import CURRENT_RUN
from ..errors import ConfigurationError, StoreUnavailable
from ..policy import StageRun
from ..report import RunReport
from .key import Uncacheable, digest, instructions_of, key_record
from .replay import entry_of, replay_result, replay_streamed, streamable
from .stores import DEFAULT_MAXSIZE, CacheStore, MemoryCacheStore, cache_store_from_url

__all__ = ["CacheOptions", "ResponseCache", "cache_options"]

logger = logging.getLogger("agentbudget")

SCOPES = ("user", "team", "global")
MAX_TTL_S = 315_360_000
SINGLE_FLIGHT_WAIT_S = 300.0
"""How long a run waits for an identical run in flight before it runs itself."""

_DECODED_MAX = 256
"""Entries of an inline store kept decoded (replay never changes an entry)."""


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Per-run cache options (``Guard.run(..., no_cache=True)`` sets them)."""

    no_cache: bool = False
    """Skip the read: the run goes to the model (its answer is still stored)."""
    no_store: bool = False
    """Skip the write: the answer is not stored."""
    cache_tool_runs: bool | None = None
    """Store this run even if it executed tools (None: the cache's ``cache_tool_runs``)."""


_NO_OPTIONS = CacheOptions()
_OPTIONS: ContextVar[CacheOptions] = ContextVar("agentbudget_cache_options", default=_NO_OPTIONS)


@contextmanager
def cache_options(options: CacheOptions) -> Iterator[None]:
    """Apply ``options`` to the runs started inside the block."""
    token = _OPTIONS.set(options)
    try:
        yield
    finally:
        _OPTIONS.reset(token)


@dataclass(slots=True)
class _Plan:
    """A run's cache state between ``begin`` and ``finish``."""

    key: str
    options: CacheOptions
    leader: asyncio.Future[dict[str, Any] | None] | None = None
    flight: tuple[int, str] | None = None


class ResponseCache:
    """Answers a repeated question from the cache: exact key, never across tenants.

    Args:
        store: a URL (``"memory://"``, ``"sqlite:///cache.db"``, ``"redis://host:6379/0"``)
            or a ``CacheStore``.
        ttl: seconds an answer stays valid.
        scope: ``"user"`` (default: answers are never shared between users), ``"team"`` or
            ``"global"`` (shared by everyone: only for answers that do not depend on who
            asks). A run without the scope's id is not cached (a warning, once).
        cache_tool_runs: also store runs that executed tools (off: a tool may read data
            that changes, or act on the world).
        namespace: part of every key; change it to invalidate everything stored before.
        maxsize: the most entries a ``memory://`` store keeps (least recently used go).

    Raises:
        ConfigurationError: for a bad URL, ttl, scope, namespace or maxsize.
    """

    stage_order: ClassVar[int] = 0
    """Runs first among a run's stages: a hit runs nothing else."""

    def __init__(
        self,
        store: str | CacheStore = "memory://",
        *,
        ttl: float = 3600,
        scope: str = "user",
        cache_tool_runs: bool = False,
        namespace: str | None = None,
        maxsize: int = DEFAULT_MAXSIZE,
    ) -> None:
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, (int, float))
            or not (0 < ttl <= MAX_TTL_S and math.isfinite(ttl))
        ):
            raise ConfigurationError(f"ttl must be seconds in (0, {MAX_TTL_S}], got {ttl!r}")
        if scope not in SCOPES:
            raise ConfigurationError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if not isinstance(cache_tool_runs, bool):
            raise ConfigurationError(f"cache_tool_runs must be a bool, got {cache_tool_runs!r}")
        if namespace is not None and not isinstance(namespace, str):
            raise ConfigurationError(f"namespace must be a string or None, got {namespace!r}")
        if isinstance(store, str):
            if store.partition("://")[0].lower() == "memory":
                store = MemoryCacheStore(store, maxsize=maxsize)
            else:
                store = cache_store_from_url(store)
        elif not isinstance(store, CacheStore):
            raise ConfigurationError(
                f"store must be a cache store URL or a CacheStore (get, set, delete, close, "
                f"sync_reads, inline), got {store!r}"
            )
        self.store: CacheStore = store
        self.ttl = float(ttl)
        self.scope = scope
        self.cache_tool_runs = cache_tool_runs
        self.namespace = namespace
        self._flights: dict[tuple[int, str], asyncio.Future[dict[str, Any] | None]] = {}
        self._writer: ThreadPoolExecutor | None = None
        self._writes: set[ThreadFuture[None]] = set()
        self._lock = threading.Lock()
        self._warned = False
        self._decoded: dict[str, tuple[str, dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"ResponseCache({getattr(self.store, 'url', self.store)!r}, scope={self.scope!r})"

    # -- the stage -----------------------------------------------------------------------

    def begin(self, run: StageRun) -> Awaitable[None] | None:
        """Look the run up; a hit sets ``run.replay`` (the SDK does not run)."""
        if CURRENT_RUN.get() is not None:
            return None  # a nested run (Agent.as_tool): part of the enclosing run's answer
        options = _OPTIONS.get()
        kwargs = run.kwargs
        if (
            kwargs.get("previous_response_id") is not None
            or kwargs.get("conversation_id") is not None
            or kwargs.get("session") is not None
        ):
            return None  # the answer depends on server-side or session state
        scope_id = self._scope_id(run)
        if scope_id is None and self.scope != "global":
            return None
        try:
            instructions = instructions_of(run.agent, run.kwargs.get("context"))
        except Uncacheable:
            return None
        if isinstance(instructions, str) or instructions is None:
            key = self._key(run, scope_id, instructions)
            if key is None:
                return None
            return self._lookup(run, key, options)
        if run.streamed:
            close = getattr(instructions, "close", None)
            if close is not None:
                close()  # async dynamic instructions cannot be resolved before the stream starts
            return None
        return self._resolve_then_lookup(run, scope_id, instructions, options)

    async def _resolve_then_lookup(
        self,
        run: StageRun,
        scope_id: str | None,
        instructions: Awaitable[str | None],
        options: CacheOptions,
    ) -> None:
        key = self._key(run, scope_id, await instructions)
        if key is not None:
            pending = self._lookup(run, key, options)
            if pending is not None:
                await pending

    def _scope_id(self, run: StageRun) -> str | None:
        if self.scope == "global":
            return None
        scope_id = run.user if self.scope == "user" else run.team
        if scope_id is None and not self._warned:
            self._warned = True
            logger.warning(
                "agentbudget: the response cache is scoped per %s and a run has no %s id: "
                "such runs are not cached (pass %s=..., or ResponseCache(scope='global') "
                "for answers that do not depend on who asks)",
                self.scope,
                self.scope,
                self.scope,
            )
        return scope_id

    def _key(self, run: StageRun, scope_id: str | None, instructions: str | None) -> str | None:
        try:
            return digest(
                key_record(
                    scope=self.scope,
                    scope_id=scope_id,
                    namespace=self.namespace,
                    agent=run.agent,
                    instructions=instructions,
                    input=run.input,
                    run_config=run.kwargs.get("run_config"),
                )
            )
        except Uncacheable as exc:
            logger.debug("agentbudget: run not cached: %s", exc)
            return None

    def _lookup(self, run: StageRun, key: str, options: CacheOptions) -> Awaitable[None] | None:
        if not options.no_cache and self.store.inline and not run.streamed:
            entry = self._read(key)
            if entry is not None and self._hit(run, entry):
                return None  # answered: nothing for finish to do
        plan = _Plan(key=key, options=options)
        run.state[self] = plan
        if options.no_cache:
            return None
        if run.streamed:
            if self.store.sync_reads:
                entry = self._read(key, now=True)
                if entry is not None and streamable(entry):
                    self._hit(run, entry)
            return None
        if self.store.inline:
            return self._single_flight(run, plan)
        return self._read_then_hit(run, plan)

    async def _read_then_hit(self, run: StageRun, plan: _Plan) -> None:
        entry = await asyncio.to_thread(self._read, plan.key)
        if entry is not None:
            self._hit(run, entry)
            return
        pending = self._single_flight(run, plan)
        if pending is not None:
            await pending

    def _single_flight(self, run: StageRun, plan: _Plan) -> Awaitable[None] | None:
        """The first miss of a key runs; identical misses in this loop wait for it."""
        loop = asyncio.get_running_loop()
        flight = (id(loop), plan.key)
        leader = self._flights.get(flight)
        if leader is None or leader.get_loop() is not loop:
            plan.leader = self._flights[flight] = loop.create_future()
            plan.flight = flight
            return None
        return self._follow(run, leader)

    async def _follow(self, run: StageRun, leader: asyncio.Future[dict[str, Any] | None]) -> None:
        try:
            entry = await asyncio.wait_for(asyncio.shield(leader), SINGLE_FLIGHT_WAIT_S)
        except asyncio.TimeoutError:
            return
        if entry is not None:
            self._hit(run, entry)

    def _read(self, key: str, *, now: bool = False) -> dict[str, Any] | None:
        """The entry under ``key``; ``now``: on the event loop's thread (a streamed run's
        lookup), through the store's bounded ``get_now`` when it has one."""
        get = getattr(self.store, "get_now", self.store.get) if now else self.store.get
        try:
            text = get(key)
        except StoreUnavailable as exc:
            logger.warning("agentbudget: cache read failed, running the agent: %s", exc)
            return None
        if text is None:
            return None
        decoded = self._decoded.get(key)
        if decoded is not None and decoded[0] is text:
            return decoded[1]  # the memory store hands back the very text it was given
        try:
            entry: dict[str, Any] = json.loads(text)
        except ValueError:
            logger.warning("agentbudget: ignoring a cache entry that is not JSON (key %s)", key)
            return None
        if self.store.inline:
            with self._lock:
                if len(self._decoded) >= _DECODED_MAX:
                    self._decoded.pop(next(iter(self._decoded)))
                self._decoded[key] = (text, entry)
        return entry

    def _hit(self, run: StageRun, entry: dict[str, Any]) -> bool:
        """Answer ``run`` with ``entry``; False when the entry cannot be replayed."""
        try:
            if run.streamed:
                result = replay_streamed(entry, run.agent, run.input, run.kwargs)
            else:
                result = replay_result(entry, run.agent, run.input, run.kwargs)
        except Exception:
            logger.warning("agentbudget: a cache entry could not be replayed", exc_info=True)
            return False
        cost = entry.get("cost_usd")
        run.cache_hit = True
        run.saved_usd = Decimal(cost) if cost is not None else Decimal(0)
        run.replay = result
        return True

    def wants_report(self, run: StageRun) -> bool:
        """Only a run this stage looked up and missed may be stored (a hit has nothing)."""
        return self in run.state

    def finish(self, run: StageRun, report: RunReport, result: Any) -> None:
        """Store a completed run's answer (unless it must not be), and wake waiting runs."""
        plan = run.state.pop(self, None)
        if not isinstance(plan, _Plan):
            return
        entry: dict[str, Any] | None = None
        try:
            if self._storable(run, report, result, plan.options):
                entry = entry_of(result, run.agent, report.cost_usd)
        except Exception:
            logger.warning("agentbudget: a run's answer could not be cached", exc_info=True)
        finally:
            if plan.leader is not None and plan.flight is not None:
                self._flights.pop(plan.flight, None)
                if not plan.leader.done():
                    plan.leader.set_result(entry)
        if entry is not None and not plan.options.no_store:
            self._write(plan.key, json.dumps(entry, separators=(",", ":")))

    def _storable(
        self, run: StageRun, report: RunReport, result: Any, options: CacheOptions
    ) -> bool:
        if result is None or report.cache_hit or report.outcome != "completed":
            return False
        if getattr(result, "interruptions", None):
            return False  # waiting on a tool approval: not an answer
        if getattr(result, "last_agent", None) is not run.agent:
            return False  # handed off: the answer came from an agent the key does not hold
        if any(call.degraded is not None for call in report.calls):
            return False  # a budget changed the model or the output bound: not the keyed model
        tool_runs = (
            self.cache_tool_runs if options.cache_tool_runs is None else options.cache_tool_runs
        )
        return report.tool_calls == 0 or tool_runs

    def _write(self, key: str, value: str) -> None:
        if self.store.inline:
            self._set(key, value)
            return
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="agentbudget-cache")
            future = self._writer.submit(self._set, key, value)
            self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    def _set(self, key: str, value: str) -> None:
        try:
            self.store.set(key, value, self.ttl)
        except StoreUnavailable as exc:
            logger.warning("agentbudget: cache write failed (the answer is not cached): %s", exc)

    # -- maintenance ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every answer handed to the store so far is written."""
        with self._lock:
            pending = list(self._writes)
        for future in pending:
            future.result(timeout)

    def close(self) -> None:
        """Write what is pending, then close the store."""
        self.flush()
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        self.store.close()
