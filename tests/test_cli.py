from __future__ import annotations

import subprocess
import sys

import pytest

from agentbudget.cli import main


def test_prices_gpt_4o(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gpt-4o"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("gpt-4o "))
    assert row.split()[:4] == ["gpt-4o", "2.50", "1.25", "2.50"]
    assert row.split()[5] == "10.00"
    assert "per 1M tokens" in out


def test_prices_by_alias_glob_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "claude-sonnet-4-5-20250929"]) == 0
    assert "claude-sonnet-4-5" in capsys.readouterr().out
    assert main(["prices", "gemini-2.5-*", "-v"]) == 0
    out = capsys.readouterr().out
    assert "gemini-2.5-pro" in out and "source: https://" in out and ">200,000" in out
    assert main(["prices", "no-such-model"]) == 1


def test_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "gpt-4o", "--output-tokens", "100", "hello world"]) == 0
    out = capsys.readouterr().out
    assert "input tokens:  9 (o200k_base)" in out
    # 9 input tokens * 2.50 + 100 output * 10 per 1M
    assert "$0.001022500" in out
    assert main(["estimate", "--model", "nope", "x"]) == 2


def test_demo_runs_offline_and_explains_itself() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentbudget", "demo"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "ToolCallLimitExceeded" in out
    assert "tools actually executed: 5" in out
    assert "gpt-4o-mini" in out and "total: $" in out
    assert "refused before sending call 2" in out
