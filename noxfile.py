"""Developer sessions: ``nox -s tests|lint|typecheck|docs|bench|demo|sdk_suite|sdk_range``."""

from __future__ import annotations

import glob

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


def install_project(session: nox.Session, *args: str) -> None:
    """Install this project (distribution ``agentbudget-sdk``, import ``agentbudget``).

    A reused virtualenv may hold the old distribution name ``agentbudget``, whose pytest
    plugin would then register twice; it is removed first.
    """
    session.run("pip", "uninstall", "--quiet", "--yes", "agentbudget", silent=True)
    session.install(*(args or ("-e", ".[dev]")))


@nox.session
def tests(session: nox.Session) -> None:
    install_project(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "format", "--check", "agentbudget", "tests", "examples", "noxfile.py")
    session.run("ruff", "check", "agentbudget", "tests", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    install_project(session)
    session.run("mypy", "--strict", "agentbudget")


@nox.session
def docs(session: nox.Session) -> None:
    install_project(session)
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured side by side in one run (not timed tests)."""
    install_project(session)
    for script in sorted(glob.glob("tests/bench/bench_*.py")):
        session.log(f"--- {script}")
        # bench_stages.py is the regression guard: it fails when the limits-only ratio
        # exceeds tests/bench/baseline.json's figure by more than its noise
        check = ["--check"] if script.endswith("bench_stages.py") else []
        session.run("python", script, *session.posargs, *check)


@nox.session
def demo(session: nox.Session) -> None:
    install_project(session, ".")
    session.run("agentbudget", "demo")


# What the Agents SDK's own Runner tests import beyond the SDK and pytest.
SDK_TEST_DEPS = [
    "pytest-mock>=3.14",
    "inline-snapshot>=0.20.7",
    "fakeredis>=2.31.3",
    "aiosqlite>=0.21",
    "sqlalchemy[asyncio]>=2.0",
    "numpy>=2.2",
    "fastapi>=0.110,<1",
    "rich>=13.1",
    "httpx>=0.27",
]


@nox.session
def sdk_suite(session: nox.Session) -> None:
    """The installed SDK's Runner tests: bare, instrumented and scoped give the same outcomes.

    Downloads the SDK's sdist into the session's tmp dir; ``posargs`` go to pytest.
    """
    session.install("-e", ".[dev]")
    session.install(*SDK_TEST_DEPS)
    work = session.create_tmp()
    session.run("python", "tests/sdk_suite/compare.py", "--work", work, *session.posargs)


# The oldest and newest openai-agents releases in the range pyproject.toml declares
# (agentbudget.runtime.SDK_RANGE): agentbudget patches private SDK internals.
SDK_RANGE_ENDS = ["0.21.0", "0.24.0"]


@nox.session
@nox.parametrize("sdk", SDK_RANGE_ENDS)
def sdk_range(session: nox.Session, sdk: str) -> None:
    """Our test suite against the oldest and the newest supported openai-agents."""
    session.install("-e", ".[dev]", f"openai-agents=={sdk}")
    session.run("python", "-m", "pytest", "-q", *session.posargs)
