"""Developer sessions: ``nox -s tests|lint|typecheck|docs|bench|demo``."""

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
        session.run("python", script, *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    install_project(session, ".")
    session.run("agentbudget", "demo")
