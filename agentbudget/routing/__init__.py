"""Model routing: send each run to the cheapest model that can do it.

A ``Router`` chooses a run's model once, before the SDK starts (``Guard(router=...)``,
``configure(router=...)``, ``budget(router=...)``); the choice is in the run's report
(``RunReport.route``), its sinks and ledgers. See docs/routing.md.
"""

from __future__ import annotations

from ..report import Route
from .base import BudgetSnapshot, NoSyncRoute, Router, RouteRequest, SyncRouter, Tier
from .budget_aware import BudgetAwareRouter
from .classifier import ClassifierRouter
from .evaluate import Evaluation, evaluate, load_labelled
from .fallback import FallbackRouter
from .heuristic import HeuristicRouter
from .local import LocalModel, local_model
from .stage import RouterStage

__all__ = [
    "BudgetAwareRouter",
    "BudgetSnapshot",
    "ClassifierRouter",
    "Evaluation",
    "FallbackRouter",
    "HeuristicRouter",
    "LocalModel",
    "NoSyncRoute",
    "Route",
    "RouteRequest",
    "Router",
    "RouterStage",
    "SyncRouter",
    "Tier",
    "evaluate",
    "load_labelled",
    "local_model",
]
