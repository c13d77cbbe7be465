"""Every code block in README.md and docs/ runs, and the examples do what they say.

How each kind of block runs (``docs/testing.md`` is run by ``tests/plugin``):

- ``python`` blocks are complete programs; ``py`` blocks are fragments that run with
  ``ab`` (agentbudget) and an offline ``agent`` defined. Both may use top-level
  ``await``, as ``python -m asyncio`` and notebooks allow.
- Model names such as ``"gpt-4o"`` reach an in-process fake of the OpenAI Responses API
  through the SDK's real model class: no key, no network.
- ``redis://`` store URLs run on a memory store (the snippet shows the API; the Redis
  store's semantics are pinned by the store contract suite against a real server).
- ``bash`` blocks: each ``agentbudget ...`` command runs through the CLI and must exit
  0, ``python examples/...`` runs the example; install and test-suite commands (``pip``,
  ``python3 -m venv``, ``pytest``, ``nox``) are what ``.ci/run`` does, not rerun here.
- ``text`` blocks are output, not code.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PYTHON = ("python", "py")
# Commands of bash blocks that set up a machine or run the suite: .ci/run does these.
SETUP = ("pip ", "python3 -m venv ", ".venv/bin/pip ", ".venv/bin/python -m pytest", "nox ")
FRAGMENT_PRELUDE = """
import agentbudget as ab
from agents import Agent
from agentbudget.testing import reply, scripted_model

agent = Agent(name="support", model=scripted_model(
    "gpt-4o", [reply("Shipped today.", input_tokens=25, output_tokens=5)]))
"""


def pages() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("_"))
    return [ROOT / "README.md", *(p for p in docs if p.name != "testing.md")]


def blocks(*languages: str) -> list[tuple[str, str, str]]:
    """``(where, language, code)`` of every fenced block in the pages."""
    found = []
    for page in pages():
        for n, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8")), 1):
            if not languages or match.group(1) in languages:
                found.append((f"{page.name}#{n}", match.group(1), match.group(2)))
    return found


def ids(found: list[tuple[str, str, str]]) -> list[str]:
    return [where for where, _, _ in found]


def commands(code: str) -> Iterator[str]:
    """The commands of a bash block: continuations joined, ``&&`` chains split."""
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield from (part.strip() for part in line.split("&&"))


def _responses_api(request: Any) -> Any:
    import httpx2 as httpx

    body = json.loads(request.content)
    if request.url.path.endswith("/responses/compact"):
        return httpx.Response(
            200,
            json={
                "id": "cmp_1",
                "object": "response.compaction",
                "created_at": 0,
                "output": [{"id": "c_1", "type": "compaction", "encrypted_content": "x"}],
                "usage": {
                    "input_tokens": 40,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 10,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 50,
                },
            },
        )
    return httpx.Response(
        200,
        json={
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": body["model"],
            "status": "completed",
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Shipped.", "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": 30,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 6,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 36,
            },
        },
    )


def _anthropic_client(asked: list[str]) -> Any:
    """An ``AsyncAnthropic`` over a fake Messages API: every answer is "Shipped."."""
    import httpx2 as httpx
    from anthropic import AsyncAnthropic

    def handle(request: Any) -> Any:
        body = json.loads(request.content)
        if request.url.path.endswith("/count_tokens"):
            return httpx.Response(200, json={"input_tokens": 30})
        asked.append(body["model"])
        return httpx.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "Shipped."}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 30, "output_tokens": 6},
            },
        )

    return AsyncAnthropic(
        api_key="sk-ant-docs",
        base_url="http://fake-anthropic.test",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        max_retries=0,
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """A fake OpenAI API for model names, memory stores for redis:// URLs, a scratch cwd.

    Yields the models the fake API was asked for.
    """
    import httpx2 as httpx
    from agents.models import _openai_shared
    from openai import AsyncOpenAI

    from agentbudget.models import anthropic as anthropic_models
    from agentbudget.stores import MemoryStore, registry

    asked: list[str] = []

    def handle(request: Any) -> Any:
        asked.append(json.loads(request.content)["model"])
        return _responses_api(request)

    client = AsyncOpenAI(
        api_key="sk-docs",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        max_retries=0,
    )
    monkeypatch.setattr(_openai_shared, "_default_openai_client", client)
    monkeypatch.setattr(_openai_shared, "_use_responses_by_default", True)
    monkeypatch.setattr(anthropic_models, "_default_client", _anthropic_client(asked))

    def redis_as_memory(url: str, **options: Any) -> MemoryStore:
        options.pop("prefix", None)
        return MemoryStore()

    monkeypatch.setitem(registry._SCHEMES, "redis", redis_as_memory)
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # paths as from the repository
    monkeypatch.chdir(tmp_path)
    yield asked


def run_python(code: str, where: str, namespace: dict[str, Any]) -> None:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    outcome = eval(compiled, namespace)  # a coroutine when the block awaits at top level
    if inspect.iscoroutine(outcome):
        asyncio.run(outcome)


@pytest.mark.parametrize(("where", "language", "code"), blocks(*PYTHON), ids=ids(blocks(*PYTHON)))
def test_python_blocks_run(
    where: str, language: str, code: str, offline: list[str], close_sdk_loop: None
) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    if language == "py":
        exec(FRAGMENT_PRELUDE, namespace)
    run_python(code, where, namespace)


def test_the_readme_snippet_calls_the_real_model_class(
    offline: list[str], capsys: pytest.CaptureFixture[str], close_sdk_loop: None
) -> None:
    ((where, _, code),) = [b for b in blocks("python") if b[0].startswith("README")]
    run_python(code, where, {"__name__": "__docs__"})
    # two runs in the scope and the guarded one, each one gpt-4o call to the fake API
    assert offline == ["gpt-4o"] * 3
    first, second = capsys.readouterr().out.splitlines()
    # 30 input x $2.50 + 6 output x $10 per 1M tokens, per call
    assert first == "0.000135000 36 ['gpt-4o']" and second == "0.000270000 0"


@pytest.mark.parametrize(("where", "language", "code"), blocks("bash"), ids=ids(blocks("bash")))
def test_bash_blocks_run(
    where: str,
    language: str,
    code: str,
    offline: list[str],
    close_sdk_loop: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentbudget.cli import main

    ran = 0
    for command in commands(code):
        if command.startswith(SETUP):
            continue
        argv = shlex.split(command)
        if argv[0].endswith("agentbudget"):
            try:
                code = main(argv[1:])
            except SystemExit as exc:  # --version
                code = int(exc.code or 0)
            assert code == 0, command
        elif argv[0] == "python" and argv[1].startswith("examples/"):
            monkeypatch.setattr(sys, "argv", argv[1:])  # the script's own arguments
            runpy.run_path(str(ROOT / argv[1]), run_name="__main__")
        else:
            pytest.fail(f"{where}: no rule to run {command!r}; add one to tests/test_docs.py")
        ran += 1
    assert ran or all(c.startswith(SETUP) for c in commands(code))


PLAN_PAGE = ROOT / "docs" / "planning.md"
GENERATED = re.compile(
    r"^```bash\n(agentbudget plan [^\n]*)\n```\n\n```text\n(.*?)^```", re.S | re.M
)


@pytest.mark.parametrize(
    ("command", "shown"),
    GENERATED.findall(PLAN_PAGE.read_text(encoding="utf-8")),
    ids=lambda value: value if value.startswith("agentbudget") else "",
)
def test_the_planning_page_shows_what_the_command_prints(
    command: str, shown: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output blocks of docs/planning.md are generated: after a price update, paste
    what this test prints."""
    from agentbudget.cli import main

    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(shlex.split(command)[1:]) == 0
    printed = "\n".join(line.rstrip() for line in capsys.readouterr().out.strip().splitlines())
    assert printed == shown.rstrip("\n"), f"docs/planning.md: {command} now prints:\n{printed}"


def test_the_planning_page_has_its_generated_tables() -> None:
    found = GENERATED.findall(PLAN_PAGE.read_text(encoding="utf-8"))
    assert [c.split("--budget ")[1].split()[0] for c, _ in found] == ["10", "50", "200", "1000"]


def test_every_block_has_a_language_this_file_runs() -> None:
    known = {*PYTHON, "bash", "text"}
    assert [(where, lang) for where, lang, _ in blocks() if lang not in known] == []
    assert len(blocks(*PYTHON)) >= 10 and len(blocks("bash")) >= 4


def test_circuit_breakers_example_stops_each_runaway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    module = runpy.run_path(str(ROOT / "examples" / "circuit_breakers.py"))
    reports = asyncio.run(module["main"]())
    assert [(r.agent, r.outcome, r.tripped_limit) for r in reports] == [
        ("researcher", "tripped", "max_tool_calls"),
        ("writer", "tripped", "max_output_tokens"),
        ("reporter", "tripped", "max_seconds"),
    ]
    assert reports[0].tool_calls == 3
    assert 100 <= reports[1].output_tokens <= 110


def test_per_user_budgets_example_downgrades_then_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BUDGET_STORE", raising=False)
    module = runpy.run_path(str(ROOT / "examples" / "per_user_budgets.py"))
    log = asyncio.run(module["main"]())
    alice = log["alice"]
    assert alice[:2] == ["gpt-4o", "gpt-4o"]
    assert "gpt-4o-mini (downgraded)" in alice
    assert alice[-1].startswith("refused: You have used today's allowance")
    assert log["bob"] == ["gpt-4o"]


def test_the_claude_example_prices_the_cache_write_and_the_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    module = runpy.run_path(str(ROOT / "examples" / "claude.py"))
    report = asyncio.run(module["main"]())
    first, second = report.calls
    # 40 in at $3/M + 1,200 written for 5 minutes at $3.75/M + 25 out at $15/M
    assert (first.cache_write_tokens, first.cost_usd) == (1_200, Decimal("0.004995"))
    # 90 in at $3/M + 1,200 read at $0.30/M + 9 out at $15/M
    assert (second.cached_input_tokens, second.cost_usd) == (1_200, Decimal("0.000765"))
    assert report.tool_calls == 1 and report.outcome == "completed"
