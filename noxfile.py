"""Developer sessions: ``nox -s tests|lint|typecheck|docs|bench|demo``."""

from __future__ import annotations

import glob

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "format", "--check", "agentbudget", "tests", "examples", "noxfile.py")
    session.run("ruff", "check", "agentbudget", "tests", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "agentbudget")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured side by side in one run (not timed tests)."""
    session.install("-e", ".[dev]")
    for script in sorted(glob.glob("tests/bench/bench_*.py")):
        session.log(f"--- {script}")
        session.run("python", script, *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    session.install(".")
    session.run("agentbudget", "demo")
