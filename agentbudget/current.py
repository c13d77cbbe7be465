"""The context variables that carry governance: the current run, ``Guard.run``'s request
and the active ``budget()`` scopes.

They are context variables, so concurrent tasks never share them; ``asyncio.to_thread``
copies them into its thread, and ``propagate`` carries them into any other.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .accounts import Account
from .policy import RunPolicy, Stage
from .report import RunReport

if TYPE_CHECKING:
    from .meter import RunMeter

__all__ = ["CURRENT_RUN", "GUARD_REQUEST", "SCOPES", "RunRequest", "ScopeFrame"]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What ``Guard.run`` asks of the run it starts."""

    policy: RunPolicy
    user: str | None
    team: str | None


@dataclass(eq=False, slots=True)
class ScopeFrame:
    """One active ``budget()`` scope as the engine sees it: its account, ids, reports and
    the stages it adds to its runs (``budget(cache=...)``)."""

    account: Account
    user: str | None
    team: str | None
    reports: list[RunReport] = field(default_factory=list)
    stages: tuple[Stage, ...] = ()


CURRENT_RUN: ContextVar[RunMeter | None] = ContextVar("agentbudget_run", default=None)
GUARD_REQUEST: ContextVar[RunRequest | None] = ContextVar("agentbudget_guard", default=None)
SCOPES: ContextVar[tuple[ScopeFrame, ...]] = ContextVar("agentbudget_scopes", default=())
