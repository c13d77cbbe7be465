"""examples/context_budget.py: its figures are the ones docs/context.md shows, and the
tokens the budget reports as removed are exactly the input it kept from being billed."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


async def test_the_examples_savings_are_exact_and_documented(capsys: Any) -> None:
    example = runpy.run_path(str(ROOT / "examples" / "context_budget.py"))
    figures = await example["main"]()
    without, with_ = figures["without"], figures["with"]
    # the scripted model bills what it is sent: what the budget removed was not billed
    assert without["input_tokens"] - with_["input_tokens"] == with_["saved_tokens"]
    assert without["saved_tokens"] == 0
    assert with_["largest_call"] <= 4_000 < without["largest_call"]
    printed = capsys.readouterr().out
    page = (ROOT / "docs" / "context.md").read_text(encoding="utf-8")
    shown = re.search(r"```text\n(40 questions.*?)```", page, re.S)
    assert shown is not None and shown.group(1) == printed
