"""Helpers shared by the test suites, importable as ``helpers.<module>``.

``tests/`` is on ``sys.path`` through pytest's ``pythonpath`` setting (pyproject.toml),
so any test or conftest imports them the same way, whichever folders pytest runs:

* ``helpers.stores_support``: store environments by kind, fake clocks, Redis servers.
* ``helpers.faults``: failure injection (a private Redis, write pauses, a slow proxy).
* ``helpers.journal_support``: a store that can be switched off, journal file readers.
* ``helpers.billing``: scripted steps and agents billed as a provider would.
* ``helpers.fake_openai``: an in-process fake of OpenAI's HTTP API.
* ``helpers.loops``: closing the event loop ``Runner.run_sync`` leaves open.

Fixtures stay in the ``conftest.py`` files; they import from here.
"""
