from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import agentbudget as ab
from agentbudget.cli import main

SCRIPT = Path(sys.executable).with_name("agentbudget")  # the console script pip installed


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``agentbudget argv``, in process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits for usage errors and --version
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def price_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "schema": 1,
                "version": "ours-1",
                "effective_date": "2026-01-01",
                "currency": "USD",
                "unit": "per_1m_tokens",
                "models": {"our-model": {"input": "1", "output": "3", "max_output_tokens": 1000}},
            }
        )
    )
    return path


def test_prices_gpt_4o(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gpt-4o"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("gpt-4o "))
    assert row.split() == ["gpt-4o", "2.50", "1.25", "2.50", "-", "10.00", "16,384"]
    assert "per 1M tokens" in out


def test_prices_formats_every_rate_alike(capsys: pytest.CaptureFixture[str]) -> None:
    # the table stores 18.7500 for one entry and 18.75 for the next: both print 18.75
    assert main(["prices", "claude-opus-4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    assert {row[3] for row in rows if row[0] in ("claude-opus-4", "claude-opus-4-1")} == {"18.75"}
    for row in rows:
        for rate in row[1:6]:
            whole, _, fraction = rate.partition(".")
            assert rate == "-" or (whole.isdigit() and len(fraction) >= 2), row
        assert row[6].replace(",", "").isdigit()


def test_prices_and_estimate_take_a_price_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(price_file(tmp_path))
    assert main(["prices", "--prices", path]) == 0
    out = capsys.readouterr().out
    assert "price table ours-1" in out and "our-model" in out and "gpt-4o" not in out
    assert main(["estimate", "--model", "our-model", "--prices", path, "hi"]) == 0
    out = capsys.readouterr().out
    # 8 input tokens (o200k fallback is approximate) x $1 + 1,000 output x $3 per 1M
    assert "priced as our-model" in out and "with 1,000 output tokens" in out
    assert main(["estimate", "--model", "gpt-4o", "--prices", path, "hi"]) == 2
    assert "No price for model 'gpt-4o'" in capsys.readouterr().err


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
    # 5) the demo's runs, read back from a SQLite ledger as `agentbudget report` shows them
    section = out[out.index("5) Every run above, written to a SQLite ledger") :]
    rows = {line.split()[0]: line.split() for line in section.splitlines() if line.strip()}
    assert rows["agent"][:3] == ["agent", "runs", "LLM"]
    assert {"support", "looping", "talker", "faq"} <= set(rows)
    assert rows["looping"][1:3] == ["1", "6"] and rows["looping"][-1] == "1"  # 6 calls, tripped
    costs = [
        re.sub(r"[^0-9.]", "", line.split("total: $")[1].split()[0])
        for line in out[: out.index("5) Every run")].splitlines()
        if "total: $" in line
    ]
    scope_cost = re.search(r"scope spent \$([0-9.]+)", out)
    assert scope_cost is not None
    # 4c) the cache: one paid run, a free hit for the same user, a paid run for another
    cached = re.findall(r"    (u-\d): \$([0-9.]+) \((paid|cache hit, saved \$[0-9.]+)\)", out)
    assert [(user, kind.split(",")[0]) for user, _, kind in cached] == [
        ("u-1", "paid"),
        ("u-1", "cache hit"),
        ("u-2", "paid"),
    ]
    assert Decimal(cached[1][1]) == 0 and "the model was asked 2 times for 3 runs" in out
    # 4d) the context budget: most of a long conversation left out of the call
    saved = re.search(r"sent within 2,000: ([0-9,]+) tokens", out)
    assert saved is not None and int(saved.group(1).replace(",", "")) > 10_000
    expected = (
        sum(map(Decimal, costs), Decimal(0))
        + Decimal(scope_cost.group(1))
        + sum((Decimal(cost) for _, cost, _ in cached), Decimal(0))
    )
    assert Decimal(rows["total"][4]) == expected  # the ledger's total is the runs' exact sum


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["estimate", "--model", "gpt-4o", "--output-tokens", "-5", "x"], "must be 0 or more"),
        (["estimate", "--model", "gpt-4o", "--output-tokens", "many", "x"], "whole number"),
        (["estimate", "x"], "required: --model"),
        (["estimate", "--model", "nope", "x"], "No price for model 'nope'"),
        (["estimate", "--model", "gpt-4o", "--prices", "/no/such.json", "x"], "cannot read"),
        (["prices", "--prices", "/no/such.json"], "cannot read price file"),
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["prices", "--bogus"], "unrecognized arguments: --bogus"),
        (["spend"], "give the allowances"),
        (["spend", "--allowance", "user:day"], "must look like per:window:unit=amount"),
        (["spend", "--allowance", "user:day:usd=abc", "--user", "u"], "decimal number"),
        (["spend", "--allowance", "user:day:tokens=5", "--store", "ftp://x"], "unknown store"),
        (["spend", "--allowance", "user:day:tokens=5", "--tz", "Mars/Base"], "time zone"),
        (["spend", "--allowance", "user:day:tokens=5", "--user", ""], "non-empty"),
        (["spend", "--user", "a", "--team", "b"], "not allowed with argument"),
        (["spend", "--budgets", "no_such_module_xyz:budgets"], "cannot import"),
        (["spend", "--budgets", "json:loads"], "is a function, not an agentbudget.Budgets"),
        (["spend", "--budgets", "json:nothing_here"], "has no attribute 'nothing_here'"),
    ],
)
def test_each_misuse_prints_one_line_and_exits_2(
    argv: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # spend --budgets may add the cwd
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("agentbudget"), err
    assert expected in err and "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"], capsys)[:2] == (
        0,
        f"agentbudget {ab.__version__} (agentbudget-sdk)\n",
    )


@pytest.mark.slow
def test_the_console_script_gives_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "estimate", "--model", "gpt-4o", "--output-tokens", "-5", "hello"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "agentbudget estimate: error: argument --output-tokens: must be 0 or more, got -5 "
        "(see agentbudget estimate --help)\n"
    )


@pytest.mark.slow
def test_spend_finds_the_budgets_module_in_the_current_directory(tmp_path: Path) -> None:
    # The console script's sys.path does not hold the current directory (python -m would).
    (tmp_path / "mycosts.py").write_text(
        "import agentbudget as ab\n"
        "budgets = ab.Budgets(store='sqlite:///spend.db',\n"
        "    allowances=[ab.Allowance(per='user', window='day', tokens=50_000)])\n"
    )
    done = subprocess.run(
        [str(SCRIPT), "spend", "--budgets", "mycosts:budgets", "--user", "u-42"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (row,) = [line.split() for line in done.stdout.splitlines() if line.startswith("user/day")]
    assert row[1] == "u-42" and row[4:] == ["50,000", "0", "0", "50,000"]


def test_the_errors_shown_in_the_docs_are_the_ones_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import re
    import shlex

    monkeypatch.chdir(tmp_path)
    page = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    (shown,) = re.findall(r"^```text\n(.*?)^```", page, re.S | re.M)
    lines = shown.splitlines()
    checked = 0
    for command, printed in zip(lines[::2], lines[1::2], strict=True):
        argv = shlex.split(command.removeprefix("$ "))
        assert argv[0] == "agentbudget"
        code, out, err = run(argv[1:], capsys)
        assert (code, out, err) == (2, "", printed + "\n")
        checked += 1
    assert checked == 2
