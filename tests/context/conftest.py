"""Context budgets: the filter alone, in the pipeline, and over the real model classes."""

from __future__ import annotations
